"""From an MCP server URL to an OAuth client that can ask a person for a token bound to
that server: discovery (:mod:`.discovery`), then registration (:mod:`.registration`).

Everything learnt from the network passes the discovery checks before roomsvc fetches
anything it names, so hostile metadata is refused before any person is asked. Dynamic
registrations are kept encrypted as project secrets (kind ``mcp-client``), one per
authorization server, reused across rooms and restarts; registering is single-flight per
server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Protocol

from roomsvc.clock import Clock
from roomsvc.domain.mcp import discovery as d
from roomsvc.domain.mcp import registration as r
from roomsvc.domain.oauth.connectors import ClientConfig, ConnectorSpec, SecretSource, parse_scopes, url_matches
from roomsvc.domain.oauth.registry import ConnectorRegistry
from roomsvc.errors import InvalidRequest, ProviderUnavailable


class DiscoveryHttp(Protocol):
    """Implemented by :class:`roomsvc.integrations.oauth_provider.AiohttpOAuthProvider`."""

    async def probe_bearer(self, url: str) -> tuple[int, str]: ...

    async def fetch_json(self, url: str, *, what: str) -> Any: ...

    async def register_client(self, registration_endpoint: str, metadata: Mapping[str, Any]) -> Any: ...


class RegistrationStore(Protocol):
    """Implemented over project secrets by :class:`ProjectRegistrations`."""

    async def load(self, issuer: str) -> r.RegisteredClient | None: ...

    async def save(self, client: r.RegisteredClient) -> None: ...


@dataclass(frozen=True)
class Discovered:
    mcp_url: str
    resource: d.ResourceMetadata
    server: d.AuthorizationServer
    challenge: d.Challenge | None = None


class McpAuthorization:
    def __init__(
        self, *, http: DiscoveryHttp, store: RegistrationStore, registry: ConnectorRegistry, connectors: list[ConnectorSpec],
        clock: Clock, insecure_ok: bool, redirect_uri: Callable[[], str], cimd_url: Callable[[], str],
        trusted_servers: tuple[str, ...] = (),
    ) -> None:
        #: mcp.trusted_servers: MCP URLs allowed on http / private addresses (not what they name)
        self._trusted = trusted_servers
        self._http = http
        self._store = store
        self._registry = registry
        self._connectors = connectors
        self._clock = clock
        self._insecure_ok = insecure_ok
        self._redirect_uri = redirect_uri
        self._cimd_url = cimd_url
        self._locks: dict[str, asyncio.Lock] = {}
        self._found: dict[str, tuple[float, Discovered]] = {}
        #: how long a discovery is reused (oauth.discovery_ttl)
        self.discovery_ttl = 300.0
        #: how many dynamic registrations this process made (tests and metrics read it)
        self.registrations = 0

    async def client(self, request: Mapping[str, Any]) -> ClientConfig:
        """The client for a request's ``mcp`` object: ``{"url": MCP server URL, "scopes"?:
        [..], "www_authenticate"?: the server's last challenge (a step-up)}``. Scopes: the
        request's, united with the challenge's on a step-up; else the server's challenge or
        its metadata's ``scopes_supported``.

        Raises:
            InvalidRequest: a malformed object. DiscoveryRefused, ProviderUnavailable.
        """
        if not isinstance(request, Mapping):
            raise InvalidRequest("'mcp' must be an object with the MCP server's 'url'")
        unknown = sorted(str(k)[:40] for k in request if k not in ("url", "scopes", "www_authenticate"))
        if unknown:
            raise InvalidRequest(f"unknown field {unknown[0]!r} in 'mcp'")
        url = d.check_url(request.get("url"), "the MCP server URL", insecure_ok=self._insecure_ok or self.trusted(request.get("url")))
        header = request.get("www_authenticate")
        if header is not None and not isinstance(header, str):
            raise InvalidRequest("'mcp.www_authenticate' must be a string")
        challenge = d.parse_challenge(header) if header else None
        found = await self.discover_cached(url, challenge)
        held = parse_scopes(request.get("scopes"), "mcp.scopes")
        if challenge is not None and challenge.scopes:
            # a step-up (insufficient_scope): ask for what is held and what the server wants now
            scopes = d.wanted_scopes(challenge, found.resource, held=held)
        else:
            scopes = held or d.wanted_scopes(found.challenge, found.resource)
        return await self.client_for(found, scopes)

    def trusted(self, url: object) -> bool:
        return isinstance(url, str) and any(url_matches(p, url) for p in self._trusted)

    async def discover_cached(self, mcp_url: str, challenge: d.Challenge | None = None) -> Discovered:
        now = self._clock.monotonic()
        cached = self._found.get(mcp_url)
        if cached is not None and now - cached[0] < self.discovery_ttl and (challenge is None or not challenge.resource_metadata):
            found = cached[1]
            return replace(found, challenge=challenge or found.challenge)
        found = await self.discover(mcp_url, challenge)
        self._found[mcp_url] = (now, found)
        return found

    async def discover(self, mcp_url: str, challenge: d.Challenge | None = None) -> Discovered:
        """The checked resource metadata and authorization server of ``mcp_url``.

        Raises:
            DiscoveryRefused: a document fails the checks, or there is none.
            ProviderUnavailable: a server could not be reached.
        """
        mcp_url = d.check_mcp_url(mcp_url)
        if challenge is None:
            status, header = await self._http.probe_bearer(mcp_url)
            challenge = d.parse_challenge(header) if status in (401, 403) else None
        resource: d.ResourceMetadata | None = None
        unreachable: ProviderUnavailable | None = None
        trusted = self.trusted(mcp_url)
        for url in d.resource_metadata_urls(mcp_url, challenge):
            same_server = trusted and d.same_origin(url, mcp_url)
            d.check_url(url, "the protected resource metadata URL", insecure_ok=self._insecure_ok or same_server)
            try:
                doc = await self._http.fetch_json(url, what="protected resource metadata")
            except ProviderUnavailable as exc:  # the next location may answer (RFC 9728 3.1)
                unreachable = exc
                continue
            if doc is not None:
                resource = d.parse_resource_metadata(doc, mcp_url=mcp_url, insecure_ok=self._insecure_ok)
                break
        if resource is None:
            if unreachable is not None:
                raise unreachable
            raise d.DiscoveryRefused("the MCP server publishes no protected resource metadata (RFC 9728)")
        issuer = resource.authorization_servers[0]
        for url in d.authorization_server_metadata_urls(issuer):
            doc = await self._http.fetch_json(url, what="authorization server metadata")
            if doc is not None:
                server = d.parse_authorization_server_metadata(doc, issuer=issuer, insecure_ok=self._insecure_ok)
                return Discovered(mcp_url, resource, server, challenge)
        raise d.DiscoveryRefused("the authorization server publishes no metadata (RFC 8414 / OpenID discovery)")

    async def client_for(self, found: Discovered, scopes: tuple[str, ...]) -> ClientConfig:
        """A client of ``found.server`` bound to the MCP server's resource, registered in
        the specification's priority order (see :mod:`.registration`)."""
        server = found.server
        choice = r.choose(server, self._connectors, cimd_url=self._cimd_url())
        base = dict(
            issuer=server.issuer, authorization_endpoint=server.authorization_endpoint, token_endpoint=server.token_endpoint,
            revocation_endpoint=server.revocation_endpoint, userinfo_endpoint=server.userinfo_endpoint,
            scopes=scopes, pkce=True, require_iss=server.iss_parameter_supported, resource=found.resource.resource,
        )
        if choice.kind == r.CONNECTOR:
            client = await self._registry.resolve(choice.detail)
            return replace(client, scopes=scopes, resource=found.resource.resource,
                           require_iss=client.require_iss or server.iss_parameter_supported)
        if choice.kind == r.CLIENT_ID_METADATA_DOCUMENT:
            return ClientConfig(connector="", client_id=choice.detail, **base)  # type: ignore[arg-type]
        registered = await self._registered(server)
        secret = SecretSource("value", "mcp-dcr", registered.client_secret) if registered.client_secret else SecretSource()
        return ClientConfig(
            connector="", client_id=registered.client_id, client_secret=secret,
            token_endpoint_auth_method=registered.token_endpoint_auth_method if registered.client_secret else "none",
            **base,  # type: ignore[arg-type]
        )

    async def _registered(self, server: d.AuthorizationServer) -> r.RegisteredClient:
        lock = self._locks.setdefault(r.registration_secret_id(server.issuer), asyncio.Lock())
        async with lock:
            kept = await self._store.load(server.issuer)
            if kept is not None and kept.usable(self._clock.now()):
                return kept
            answer = await self._http.register_client(
                server.registration_endpoint, r.client_metadata(redirect_uri=self._redirect_uri())
            )
            registered = r.parse_registration(answer, issuer=server.issuer, now=self._clock.now())
            self.registrations += 1
            await self._store.save(registered)
            return registered

    def client_metadata_document(self) -> dict[str, Any]:
        """What roomsvc serves at :data:`~.registration.CIMD_PATH` (the URL is the client id)."""
        return r.client_metadata(redirect_uri=self._redirect_uri(), client_id=self._cimd_url())


class ProjectSecretsPort(Protocol):
    async def put_system(self, *, id: str, kind: str, name: str, payload: dict) -> Any: ...

    async def resolve_system(self, id: str, *, kind: str) -> dict | None: ...


class ProjectRegistrations:
    """Dynamic registrations as encrypted project secrets of kind ``mcp-client``; the
    record's name (shown by ``roomsvc mcp clients``) says issuer and client id, never the
    client secret."""

    def __init__(self, secrets: ProjectSecretsPort) -> None:
        self._secrets = secrets

    async def load(self, issuer: str) -> r.RegisteredClient | None:
        data = await self._secrets.resolve_system(r.registration_secret_id(issuer), kind="mcp-client")
        return r.RegisteredClient.from_record(data) if data else None

    async def save(self, client: r.RegisteredClient) -> None:
        await self._secrets.put_system(
            id=r.registration_secret_id(client.issuer), kind="mcp-client",
            name=f"{client.issuer} client_id={client.client_id}"[:200], payload=client.to_record(),
        )
