"""The outbound OAuth client: authlib's I/O-free helpers over one aiohttp ClientSession.

authlib builds the protocol messages (authorization URL, PKCE S256 challenge, token
and revocation request bodies); aiohttp carries them. This is the only module that
talks to OAuth providers, and the only place authlib is imported. Every call:

* has connect and total timeouts, follows no redirect, sends no cookies and ignores
  proxy environment variables;
* reads at most ``max_response_size`` bytes (a larger answer is refused);
* turns foreign exceptions into roomsvc errors, chained: timeouts, connection errors,
  5xx and 429 become :class:`~roomsvc.errors.ProviderUnavailable` (transient, may be
  retried); a refusal (``{"error": ...}``), a redirect or a malformed answer becomes
  :class:`~roomsvc.errors.OAuthError` carrying only the RFC 6749 error code.

Tokens, codes, secrets and response bodies never reach a log line or an error message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from typing import Any, Iterable, Mapping
from urllib.parse import quote_plus

import aiohttp
from authlib.oauth2.auth import ClientAuth as AuthlibClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7009.parameters import prepare_revoke_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oauth2.rfc8414 import get_well_known_url

from roomsvc import strict_json
from roomsvc.domain.oauth.connectors import ClientConfig
from roomsvc.domain.oauth.credentials import TokenResponse
from roomsvc.domain.oauth.ports import ClientAuth, ProviderMetadata
from roomsvc.errors import InvalidRequest, OAuthError, ProviderUnavailable, RoomsvcError
from roomsvc.integrations.public_resolver import PrivateAddressRefused, PublicOnlyResolver

log = logging.getLogger("roomsvc.oauth.provider")

_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
#: parameters the protocol sets itself; a connector's extra parameters cannot override them
_RESERVED = {"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"}


def _basic_form_encoded(client: AuthlibClientAuth, method: str, uri: str, headers: dict, body: str) -> tuple:
    """client_secret_basic as RFC 6749 2.3.1 says: form-urlencode id and secret first
    (authlib's own encoder does not, which breaks secrets containing ``+`` or ``%``)."""
    text = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret or '')}"
    headers["Authorization"] = "Basic " + base64.b64encode(text.encode()).decode()
    return uri, headers, body


class AiohttpOAuthProvider:
    """Implements :class:`roomsvc.domain.oauth.ports.OAuthProvider`."""

    def __init__(
        self, *, connect_timeout: float = 5.0, timeout: float = 15.0, max_response_size: int = 65536,
        public_only: bool = False, exempt_hosts: Iterable[str] = (),
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._max = max_response_size
        #: production mode (issue 17): names must resolve to public addresses, except the
        #: hosts the operator configured (roomsvc/integrations/public_resolver.py)
        self._public_only = public_only
        self._exempt = tuple(exempt_hosts)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(self._exempt)) if self._public_only else None
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, connector=connector,
                headers={"User-Agent": "roomsvc-oauth", "Accept": "application/json"},
            )
        return self._session

    # -- I/O-free protocol helpers ------------------------------------------------------------

    def s256_challenge(self, verifier: str) -> str:
        return str(create_s256_code_challenge(verifier))

    def authorization_url(
        self, client: ClientConfig, *, redirect_uri: str, state: str, code_challenge: str | None
    ) -> str:
        extra = {k: v for k, v in client.extra_authorize_params.items() if k not in _RESERVED}
        if code_challenge:
            extra.update(code_challenge=code_challenge, code_challenge_method="S256")
        if client.resource:  # RFC 8707 (MCP servers, issue 17)
            extra["resource"] = client.resource
        return str(prepare_grant_uri(
            client.authorization_endpoint, client.client_id, "code", redirect_uri=redirect_uri,
            scope=list(client.scopes) or None, state=state, **extra,
        ))

    def id_token_subject(self, id_token: str) -> str | None:
        parts = id_token.split(".")
        if len(parts) != 3:
            return None
        try:
            claims = strict_json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)), what="ID token")
        except (InvalidRequest, ValueError, binascii.Error):
            return None
        sub = claims.get("sub") if isinstance(claims, dict) else None
        return sub if isinstance(sub, str) and sub.isprintable() else None

    # -- calls --------------------------------------------------------------------------------

    async def discover(self, issuer: str) -> ProviderMetadata:
        """OpenID discovery, then RFC 8414; the document's ``issuer`` must equal ``issuer``."""
        candidates = [issuer.rstrip("/") + "/.well-known/openid-configuration", get_well_known_url(issuer, external=True)]
        data: Any = None
        for url in candidates:
            status, data = await self._call("GET", url, what="discovery")
            if status == 200 and isinstance(data, dict):
                break
        else:
            raise OAuthError(f"no discovery document found for issuer {issuer}")
        if data.get("issuer") != issuer:
            raise OAuthError(f"the discovery document of {issuer} names another issuer (RFC 8414 3.3)")
        methods = data.get("code_challenge_methods_supported")
        return ProviderMetadata(
            issuer=issuer,
            authorization_endpoint=_str(data.get("authorization_endpoint")),
            token_endpoint=_str(data.get("token_endpoint")),
            revocation_endpoint=_str(data.get("revocation_endpoint")),
            userinfo_endpoint=_str(data.get("userinfo_endpoint")),
            iss_parameter_supported=data.get("authorization_response_iss_parameter_supported") is True,
            code_challenge_methods=tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else None,
        )

    async def exchange_code(
        self, token_endpoint: str, auth: ClientAuth, *, code: str, redirect_uri: str, code_verifier: str | None,
        resource: str = "",
    ) -> TokenResponse:
        extra = {"code_verifier": code_verifier} if code_verifier else {}
        if resource:
            extra["resource"] = resource
        body = prepare_token_request("authorization_code", code=code, redirect_uri=redirect_uri, **extra)
        return await self._token(token_endpoint, auth, body, "code exchange")

    async def refresh(self, token_endpoint: str, auth: ClientAuth, *, refresh_token: str, resource: str = "") -> TokenResponse:
        extra = {"resource": resource} if resource else {}
        body = prepare_token_request("refresh_token", refresh_token=refresh_token, **extra)
        return await self._token(token_endpoint, auth, body, "refresh")

    async def revoke(self, revocation_endpoint: str, auth: ClientAuth, *, token: str, token_type_hint: str) -> None:
        body, headers = prepare_revoke_token_request(token, token_type_hint)
        uri, headers, body = self._authenticate(auth, revocation_endpoint, headers, body)
        status, data = await self._call("POST", uri, data=body, headers=headers, what="revocation")
        if status != 200:  # RFC 7009 2.2: 200 even for an unknown token
            raise OAuthError(f"revocation refused: {_error_code(data)} (HTTP {status})", error=_error_code(data))

    async def userinfo(self, userinfo_endpoint: str, access_token: str) -> Mapping[str, Any]:
        status, data = await self._call(
            "GET", userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}, what="userinfo"
        )
        if status != 200 or not isinstance(data, dict):
            raise OAuthError(f"userinfo refused (HTTP {status})", error=_error_code(data))
        return data

    # -- MCP authorization discovery and registration (issue 17) --------------------------------

    async def fetch_json(self, url: str, *, what: str) -> Any:
        """A JSON document at ``url`` (GET, no redirect), or None when there is none (4xx,
        not JSON). Transient failures raise ProviderUnavailable."""
        status, data = await self._call("GET", url, what=what)
        return data if status == 200 else None

    async def probe_bearer(self, url: str) -> tuple[int, str]:
        """POST an MCP ``initialize`` without a token: the status and the
        ``WWW-Authenticate`` header (a protected server answers 401 with its challenge)."""
        body = json.dumps({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "roomsvc", "version": "0"}},
        })
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as response:
                await self._read(response, "MCP probe")
                return response.status, response.headers.get("WWW-Authenticate", "")[:8192]
        except RoomsvcError:
            raise
        except asyncio.TimeoutError as exc:
            raise ProviderUnavailable("MCP probe: the server did not answer in time") from exc
        except aiohttp.ClientError as exc:
            _refuse_private(exc, "MCP probe")
            raise ProviderUnavailable(f"MCP probe: cannot reach the server ({type(exc).__name__})") from exc

    async def register_client(self, registration_endpoint: str, metadata: Mapping[str, Any]) -> Any:
        """RFC 7591 dynamic registration: the answer's JSON object.

        Raises:
            OAuthError: the server refused (only its error code is kept).
        """
        status, data = await self._call(
            "POST", registration_endpoint, data=json.dumps(dict(metadata)), headers={"Content-Type": "application/json"},
            what="client registration",
        )
        if status not in (200, 201) or not isinstance(data, dict) or "error" in data:
            code = _error_code(data)
            raise OAuthError(f"client registration refused by the authorization server: {code} (HTTP {status})", error=code)
        return data

    # -- internals -----------------------------------------------------------------------------

    async def _token(self, endpoint: str, auth: ClientAuth, body: str, what: str) -> TokenResponse:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        uri, headers, body = self._authenticate(auth, endpoint, headers, body)
        status, data = await self._call("POST", uri, data=body, headers=headers, what=what)
        if not isinstance(data, dict):
            raise OAuthError(f"{what}: the token endpoint's answer is not a JSON object (HTTP {status})")
        if status != 200 or "error" in data:
            code = _error_code(data)
            raise OAuthError(f"{what} refused by the provider: {code}", error=code)
        return TokenResponse.from_json(data)

    def _authenticate(self, auth: ClientAuth, uri: str, headers: dict[str, str], body: str) -> tuple[str, dict[str, str], str]:
        method: Any = _basic_form_encoded if auth.method == "client_secret_basic" else auth.method
        if auth.method != "none" and not auth.secret:
            method = "none"
        prepared = AuthlibClientAuth(auth.client_id, auth.secret, method).prepare("POST", uri, headers, body)
        return prepared[0], prepared[1], prepared[2]

    async def _call(
        self, method: str, url: str, *, what: str, data: str | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        try:
            async with self._client().request(
                method, url, data=data, headers=dict(headers or {}), allow_redirects=False
            ) as response:
                status = response.status
                raw = await self._read(response, what)
        except RoomsvcError:
            raise
        except asyncio.TimeoutError as exc:
            raise ProviderUnavailable(f"{what}: the provider did not answer in time") from exc
        except aiohttp.ClientError as exc:
            _refuse_private(exc, what)
            raise ProviderUnavailable(f"{what}: cannot reach the provider ({type(exc).__name__})") from exc
        if 300 <= status < 400:
            raise OAuthError(f"{what}: the provider answered with a redirect, which roomsvc does not follow")
        if status == 429 or status >= 500:
            raise ProviderUnavailable(f"{what}: the provider answered HTTP {status}")
        try:
            return status, strict_json.loads(raw, what=f"{what} answer") if raw else None
        except InvalidRequest:  # not JSON, or a hostile document (duplicate keys, NaN, too deep)
            return status, None

    async def _read(self, response: aiohttp.ClientResponse, what: str) -> bytes:
        if response.content_length is not None and response.content_length > self._max:
            raise OAuthError(f"{what}: the provider's answer is larger than {self._max} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(8192):
            size += len(chunk)
            if size > self._max:
                raise OAuthError(f"{what}: the provider's answer is larger than {self._max} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _refuse_private(exc: aiohttp.ClientError, what: str) -> None:
    """A name that resolved only to non-public addresses is a refusal, not an outage:
    nothing was sent, and trying again will not help.

    Raises:
        OAuthError: ``private_address``, naming the host (never the URL's path or query).
    """
    refused = getattr(exc, "os_error", None)
    if isinstance(refused, PrivateAddressRefused):
        raise OAuthError(
            f"{what}: {refused.host} resolves only to loopback or private addresses; refused before connecting "
            "(allowed only with server.allow_insecure_loopback)", error="private_address",
        ) from None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _error_code(data: object) -> str:
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else "error"
