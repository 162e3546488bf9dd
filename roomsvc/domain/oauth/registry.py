"""The configured connectors, resolved to clients (discovery cached with a lifetime).

Connectors are loaded once at start-up (:mod:`roomsvc.connectors`). One with an
``issuer`` learns its endpoints from RFC 8414 / OpenID discovery when first used (so a
provider that is down at start-up does not stop roomsvc); the adapter checks that the
metadata's ``issuer`` equals the configured one exactly. Explicit endpoints in the
connector file win over discovered ones.
"""

from __future__ import annotations

import asyncio

from roomsvc.clock import Clock
from roomsvc.domain.oauth.connectors import ClientConfig, ConnectorSpec, check_endpoint
from roomsvc.domain.oauth.ports import OAuthProvider, ProviderMetadata
from roomsvc.errors import InvalidRequest, NotFound, OAuthError


class ConnectorRegistry:
    def __init__(
        self, specs: list[ConnectorSpec], *, provider: OAuthProvider, clock: Clock, discovery_ttl: float, insecure_ok: bool
    ) -> None:
        self._specs = {s.name: s for s in specs}
        self._provider = provider
        self._clock = clock
        self._ttl = discovery_ttl
        self._insecure_ok = insecure_ok
        self._cache: dict[str, tuple[float, ProviderMetadata]] = {}
        self._lock = asyncio.Lock()

    def names(self) -> list[str]:
        return sorted(self._specs)

    def spec(self, name: str) -> ConnectorSpec:
        """Raises NotFound for an unknown connector."""
        try:
            return self._specs[name]
        except KeyError:
            raise NotFound(f"no OAuth connector {name!r} is configured on this server") from None

    async def resolve(self, name: str) -> ClientConfig:
        """The connector's client, with endpoints from its file or from discovery.

        Raises:
            NotFound: no such connector.
            OAuthError / ProviderUnavailable: discovery failed or its metadata is refused.
        """
        spec = self.spec(name)
        meta = await self._metadata(spec) if spec.issuer else None
        authorization = spec.authorization_endpoint or (meta.authorization_endpoint if meta else "")
        token = spec.token_endpoint or (meta.token_endpoint if meta else "")
        if not authorization or not token:
            raise OAuthError(f"connector {name!r} has no authorization or token endpoint")
        if spec.pkce and meta is not None and meta.code_challenge_methods is not None and "S256" not in meta.code_challenge_methods:
            raise OAuthError(f"the provider of connector {name!r} does not offer PKCE S256; set pkce = false to allow it")
        method = spec.token_endpoint_auth_method or ("client_secret_basic" if spec.client_secret.kind != "none" else "none")
        return ClientConfig(
            connector=spec.name,
            issuer=spec.issuer,
            authorization_endpoint=authorization,
            token_endpoint=token,
            client_id=spec.client_id,
            client_secret=spec.client_secret,
            token_endpoint_auth_method=method,
            revocation_endpoint=spec.revocation_endpoint or (meta.revocation_endpoint if meta else ""),
            userinfo_endpoint=spec.userinfo_endpoint or (meta.userinfo_endpoint if meta else ""),
            scopes=spec.scopes,
            pkce=spec.pkce,
            extra_authorize_params=dict(spec.extra_authorize_params),
            allowed_hosts=spec.allowed_hosts,
            header_format=spec.header_format,
            require_iss=spec.iss_parameter or bool(meta and meta.iss_parameter_supported),
        )

    async def _metadata(self, spec: ConnectorSpec) -> ProviderMetadata:
        now = self._clock.monotonic()
        cached = self._cache.get(spec.issuer)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        async with self._lock:
            cached = self._cache.get(spec.issuer)
            if cached and now - cached[0] < self._ttl:
                return cached[1]
            meta = await self._provider.discover(spec.issuer)
            for what, url in (
                ("authorization_endpoint", meta.authorization_endpoint),
                ("token_endpoint", meta.token_endpoint),
                ("revocation_endpoint", meta.revocation_endpoint),
                ("userinfo_endpoint", meta.userinfo_endpoint),
            ):
                if url:
                    try:
                        check_endpoint(url, f"the {what} of {spec.issuer}", insecure_ok=self._insecure_ok)
                    except InvalidRequest as exc:
                        raise OAuthError(f"discovery of connector {spec.name!r}: {exc.message}") from None
            self._cache[spec.issuer] = (now, meta)
            return meta
