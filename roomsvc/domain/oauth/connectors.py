"""OAuth client configurations: server-defined connectors and inline configs, as values.

A *connector* is an OAuth provider definition an operator puts in
``config/connectors/*.toml``; an *inline config* is MeshAgent's ``OAuthClientConfig``
sent with a request. Both resolve to a :class:`ClientConfig` (endpoints known, secret
source named but not read). Everything here is pure: URL checks, allow-list and grant
matching, ids.

Rules (see docs/oauth.md):

* every endpoint is an absolute https URL whose host is a name or a public address;
  http and loopback/private hosts are accepted only with ``allow_insecure_loopback``;
* an inline config is accepted only when the server's ``oauth.inline_endpoints``
  admits its authorization and token endpoints *and* the caller's ``secrets`` grant
  admits its authorization endpoint and client id; its ``no_pkce`` is ignored;
* the caller's ``secrets.request_oauth_token`` list (``[{endpoint, client_id}]``, ``*``
  as a prefix wildcard) is checked for connectors too, against the connector's
  resolved authorization endpoint and client id: absent = allow all, empty = deny all.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping
from urllib.parse import urlsplit

from roomsvc.errors import InvalidRequest, PermissionDenied

DEFAULT_HEADER_FORMAT = "Bearer {token}"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,256}")  # RFC 6749 3.3 scope-token
MAX_SCOPES = 64
MAX_URL = 2048


@dataclass(frozen=True)
class SecretSource:
    """Where a client secret comes from. ``kind``: ``none``, ``value`` (already read from
    a file, the environment or an inline config) or ``project`` (a project ``keys``
    secret ``ref`` = ``"<secret id>:<KEY>"``, read when needed)."""

    kind: str = "none"
    ref: str = ""
    value: str = field(default="", repr=False)

    def __repr__(self) -> str:
        shown = "<hidden>" if self.value else "''"
        return f"SecretSource(kind={self.kind!r}, ref={self.ref!r}, value={shown})"


@dataclass(frozen=True)
class ConnectorSpec:
    """A connector as written in its TOML file (endpoints may still need discovery)."""

    name: str
    client_id: str
    issuer: str = ""
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    revocation_endpoint: str = ""
    userinfo_endpoint: str = ""
    token_endpoint_auth_method: str = ""
    client_secret: SecretSource = field(default_factory=SecretSource)
    scopes: tuple[str, ...] = ()
    pkce: bool = True
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    allowed_hosts: tuple[str, ...] = ()
    header_format: str = DEFAULT_HEADER_FORMAT
    #: the issuer sends ``iss`` on its redirects (RFC 9207); taken from discovery otherwise
    iss_parameter: bool = False


@dataclass(frozen=True)
class ClientConfig:
    """A resolved client: everything a flow, a refresh or a revocation needs but the secret."""

    #: connector name, or "" for an inline config
    connector: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    client_id: str
    client_secret: SecretSource = field(default_factory=SecretSource)
    token_endpoint_auth_method: str = "none"
    revocation_endpoint: str = ""
    userinfo_endpoint: str = ""
    scopes: tuple[str, ...] = ()
    pkce: bool = True
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    allowed_hosts: tuple[str, ...] = ()
    header_format: str = DEFAULT_HEADER_FORMAT
    #: a callback must carry ``iss`` equal to ``issuer`` (RFC 9207)
    require_iss: bool = False
    #: RFC 8707 resource indicator sent on authorization, token and refresh requests
    #: (an MCP server, issue 17); the credential is then keyed by (issuer, resource)
    resource: str = ""

    @property
    def credential_id(self) -> str:
        """The id of the room secret that stores a credential of this client."""
        if self.resource:
            return resource_credential_id(self.issuer, self.resource)
        return self.connector or inline_credential_id(self.authorization_endpoint, self.client_id)

    def to_record(self) -> dict[str, Any]:
        """Plain data to store with a flow: everything but the secret."""
        data = asdict(self)
        data.pop("client_secret")
        data["extra_authorize_params"] = dict(self.extra_authorize_params)
        return data

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "ClientConfig":
        data = dict(record)
        for key in ("scopes", "allowed_hosts"):
            data[key] = tuple(data.get(key) or ())
        return cls(**data)

    def public_view(self) -> dict[str, Any]:
        """What a consenting participant's app may see (MeshAgent's ``oauth`` object): no secret."""
        return {
            "client_id": self.client_id,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "scopes": list(self.scopes),
            "no_pkce": not self.pkce,
        }


def resource_credential_id(issuer: str, resource: str) -> str:
    """One credential per (authorization server, resource) and person: ``mcp:<hash>``."""
    key = issuer[:-1] if issuer.endswith("/") and issuer.count("/") == 3 else issuer
    digest = hashlib.sha256(f"{key}\n{resource}".encode()).hexdigest()[:32]
    return f"mcp:{digest}"


def inline_credential_id(authorization_endpoint: str, client_id: str) -> str:
    digest = hashlib.sha256(f"{authorization_endpoint}\n{client_id}".encode()).hexdigest()[:32]
    return f"oauth:{digest}"


# -- URL checks -------------------------------------------------------------------------------


def check_endpoint(url: object, what: str, *, insecure_ok: bool) -> str:
    """An absolute https URL with a public host, or (``insecure_ok``) http / loopback too.

    Raises:
        InvalidRequest: naming ``what`` and the reason (never the whole URL's query).
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL or not url.isprintable() or " " in url:
        raise InvalidRequest(f"{what} must be an absolute URL")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InvalidRequest(f"{what} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidRequest(f"{what} must be an absolute https URL")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidRequest(f"{what} must not carry user info or a fragment")
    if insecure_ok:
        return url
    if parts.scheme != "https":
        raise InvalidRequest(f"{what} must use https (http is allowed only with server.allow_insecure_loopback)")
    if _is_local(host):
        raise InvalidRequest(
            f"{what} points at a loopback or private address (allowed only with server.allow_insecure_loopback)"
        )
    return url


def _is_local(host: str) -> bool:
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global


def url_matches(pattern: str, url: str) -> bool:
    """``pattern`` equals ``url``, or ends in ``*`` and is a prefix of it."""
    if pattern.endswith("*"):
        return url.startswith(pattern[:-1])
    return url == pattern


# -- grants and the inline allow-list ------------------------------------------------------------


def check_grant(secrets_grant: object, authorization_endpoint: str, client_id: str) -> None:
    """The caller's ``secrets`` API section admits this authorization endpoint and client.

    Raises:
        PermissionDenied: the grant has a ``request_oauth_token`` list that does not admit it.
    """
    allowed = secrets_grant.get("request_oauth_token") if isinstance(secrets_grant, Mapping) else None
    if allowed is None:
        return
    if not isinstance(allowed, list):
        raise PermissionDenied("the token's secrets.request_oauth_token grant must be a list")
    for entry in allowed:
        if (
            isinstance(entry, Mapping)
            and entry.get("client_id") == client_id
            and isinstance(entry.get("endpoint"), str)
            and url_matches(entry["endpoint"], authorization_endpoint)
        ):
            return
    raise PermissionDenied("the token's secrets grant does not allow this OAuth endpoint and client")


def check_inline_allowed(config: ClientConfig, allow_list: tuple[str, ...]) -> None:
    """Both endpoints of an inline config are on the server's ``oauth.inline_endpoints``.

    Raises:
        PermissionDenied: naming the setting, not the endpoints.
    """
    for what, url in (("authorization", config.authorization_endpoint), ("token", config.token_endpoint)):
        if not any(url_matches(p, url) for p in allow_list):
            raise PermissionDenied(
                f"inline OAuth configs are accepted only for endpoints in oauth.inline_endpoints; "
                f"the {what} endpoint is not"
            )


# -- parsing -------------------------------------------------------------------------------------


def parse_scopes(value: object, what: str = "scopes") -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(" ") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or len(items) > MAX_SCOPES:
        raise InvalidRequest(f"{what} must be a list of at most {MAX_SCOPES} scope strings")
    out = []
    for item in items:
        if not isinstance(item, str) or not _SCOPE.fullmatch(item):
            raise InvalidRequest(f"{what} entries must be OAuth scope tokens (printable, no spaces or quotes)")
        if item not in out:
            out.append(item)
    return tuple(out)


def parse_connector_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidRequest("a connector name is 1-64 ASCII letters, digits, '.', '_' or '-'")
    return value


def parse_inline_config(data: object, *, insecure_ok: bool) -> ClientConfig:
    """MeshAgent's ``OAuthClientConfig`` (``client_id``, ``client_secret``,
    ``authorization_endpoint``, ``token_endpoint``, ``scopes``, ``no_pkce``) as a client.

    ``no_pkce`` is ignored: inline clients always use PKCE. The issuer is unknown, so
    ``iss`` on the callback is not required (but checked when a connector is used).

    Raises:
        InvalidRequest: a field is missing, of the wrong type, or an endpoint is refused.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequest("'oauth' must be an object")
    known = {"client_id", "client_secret", "authorization_endpoint", "token_endpoint", "scopes", "no_pkce"}
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise InvalidRequest(f"unknown field {str(unknown[0])[:40]!r} in 'oauth'")
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not client_id or len(client_id) > 512 or not client_id.isprintable():
        raise InvalidRequest("'oauth.client_id' must be a non-empty string")
    secret = data.get("client_secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) > 4096):
        raise InvalidRequest("'oauth.client_secret' must be a string")
    return ClientConfig(
        connector="",
        issuer="",
        authorization_endpoint=check_endpoint(
            data.get("authorization_endpoint"), "oauth.authorization_endpoint", insecure_ok=insecure_ok
        ),
        token_endpoint=check_endpoint(data.get("token_endpoint"), "oauth.token_endpoint", insecure_ok=insecure_ok),
        client_id=client_id,
        client_secret=SecretSource("value", "inline", secret) if secret else SecretSource(),
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        scopes=parse_scopes(data.get("scopes"), "oauth.scopes"),
        pkce=True,
    )


def narrow(config: ClientConfig, scopes: tuple[str, ...] | None) -> ClientConfig:
    """A request may narrow a connector's scopes, never widen them.

    Raises:
        PermissionDenied: a scope the connector does not list.
    """
    if not scopes:
        return config
    extra = [s for s in scopes if s not in config.scopes]
    if extra and config.connector:
        raise PermissionDenied(f"scope {extra[0]!r} is not among the connector's scopes")
    return replace(config, scopes=scopes)
