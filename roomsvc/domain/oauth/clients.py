"""How roomsvc authenticates as an OAuth client: secrets from connectors, inline
configs and stored credentials.

A connector's secret is read from where its file says (already read at start-up for
``file``/``env``/inline; from a project ``keys`` secret when needed). An inline
config's secret travels sealed with its flow and then inside the credential it
created. A stored credential of a connector must still match the connector's client.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Mapping

from roomsvc.domain.oauth.connectors import ClientConfig, SecretSource
from roomsvc.domain.oauth.credentials import OAuthCredential
from roomsvc.domain.oauth.ports import ClientAuth
from roomsvc.domain.oauth.registry import ConnectorRegistry
from roomsvc.errors import NotFound, OAuthError, ReauthRequired

#: (project keys secret id, service name for the audit) -> its KEY=VALUE pairs
ProjectSecretResolver = Callable[[str, str], Awaitable[Mapping[str, str]]]


class ClientSecrets:
    def __init__(self, registry: ConnectorRegistry, project_keys: ProjectSecretResolver | None) -> None:
        self._registry = registry
        self._project_keys = project_keys

    async def for_client(self, client: ClientConfig, inline_secret: str | None) -> ClientAuth:
        """Client authentication for a flow's code exchange."""
        secret = inline_secret
        if client.connector:
            secret = await self._value(self._registry.spec(client.connector).client_secret, client.connector)
        method = client.token_endpoint_auth_method if secret else "none"
        return ClientAuth(client.client_id, method, secret)

    async def for_credential(self, cred: OAuthCredential) -> ClientAuth:
        """Client authentication for refreshing or revoking a stored credential.

        Raises:
            OAuthError: its connector is gone. ReauthRequired: the connector's client changed.
        """
        if not cred.connector:
            return ClientAuth(cred.client_id, cred.token_endpoint_auth_method, cred.client_secret)
        try:
            spec = self._registry.spec(cred.connector)
        except NotFound:
            raise OAuthError(f"connector {cred.connector!r} is no longer configured") from None
        if spec.client_id != cred.client_id:
            raise ReauthRequired(f"connector {cred.connector!r} now uses another client: request a token again")
        secret = await self._value(spec.client_secret, spec.name)
        return ClientAuth(cred.client_id, cred.token_endpoint_auth_method, secret)

    async def _value(self, source: SecretSource, connector: str) -> str | None:
        if source.kind == "value":
            return source.value
        if source.kind == "project":
            if self._project_keys is None:
                raise OAuthError(f"connector {connector!r} needs project secrets, which are not available")
            secret_id, _, key = source.ref.partition(":")
            keys = await self._project_keys(secret_id, f"oauth-connector:{connector}")
            if key not in keys:
                raise OAuthError(f"project secret {secret_id!r} has no key {key!r} for connector {connector!r}")
            return keys[key]
        return None
