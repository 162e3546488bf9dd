"""The interfaces the OAuth domain needs: flow storage, the provider, and a lock.

Implementations: :mod:`roomsvc.storage.sqlite.oauth_store` (flows),
:mod:`roomsvc.integrations.oauth_provider` (the provider, over authlib and aiohttp), and
:class:`roomsvc.domain.oauth.refresh.LocalLocks` (an in-process lock; a cross-node lock
for the scale-out issue fills the same protocol).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from roomsvc.domain.oauth.connectors import ClientConfig
from roomsvc.domain.oauth.credentials import TokenResponse
from roomsvc.domain.oauth.flows import Flow, FlowStatus
from roomsvc.domain.ports import EncryptedBlob


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of RFC 8414 / OpenID discovery metadata roomsvc uses (already checked:
    ``issuer`` equals the configured issuer exactly, endpoints pass the URL rules)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str = ""
    userinfo_endpoint: str = ""
    iss_parameter_supported: bool = False
    #: None when the metadata does not say
    code_challenge_methods: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ClientAuth:
    """How roomsvc authenticates as the OAuth client at the token/revocation endpoints."""

    client_id: str
    method: str = "none"  # client_secret_basic | client_secret_post | none
    secret: str | None = field(default=None, repr=False)


class OAuthProvider(Protocol):
    """One outbound OAuth client. Every method translates transport failures into
    :class:`~roomsvc.errors.ProviderUnavailable` (transient) or
    :class:`~roomsvc.errors.OAuthError` (the provider said no, or answered badly)."""

    async def discover(self, issuer: str) -> ProviderMetadata: ...

    def s256_challenge(self, verifier: str) -> str: ...

    def authorization_url(
        self, client: ClientConfig, *, redirect_uri: str, state: str, code_challenge: str | None
    ) -> str: ...

    async def exchange_code(
        self, token_endpoint: str, auth: ClientAuth, *, code: str, redirect_uri: str, code_verifier: str | None,
        resource: str = "",
    ) -> TokenResponse:
        """``resource``: RFC 8707, sent when not empty (only MCP clients set it)."""

    async def refresh(self, token_endpoint: str, auth: ClientAuth, *, refresh_token: str, resource: str = "") -> TokenResponse: ...

    async def revoke(self, revocation_endpoint: str, auth: ClientAuth, *, token: str, token_type_hint: str) -> None: ...

    async def userinfo(self, userinfo_endpoint: str, access_token: str) -> Mapping[str, Any]: ...

    def id_token_subject(self, id_token: str) -> str | None:
        """``sub`` of an ID token received straight from the token endpoint over TLS
        (OpenID Core 3.1.3.7 lets a code-flow client skip the signature check then)."""


class FlowRepository(Protocol):
    async def create_flow(self, flow: Flow, secrets: EncryptedBlob, *, purge_before: float) -> None:
        """Store a new flow; flows whose deadline passed before ``purge_before`` are deleted."""

    async def get_flow(
        self, *, id: str | None = None, start_hash: str | None = None, state_hash: str | None = None
    ) -> Flow | None: ...

    async def move_flow(
        self,
        flow_id: str,
        target: FlowStatus,
        *,
        now: float,
        state_hash: str | None = None,
        live: bool = False,
        opened: tuple[str, str, float] | None = None,
        error: str = "",
    ) -> Flow | None:
        """Move the flow to ``target`` if its status is one ``target`` may come from
        (and, with ``state_hash``, the state matches and is unexpired; with ``live``, the
        request's deadline has not passed). ``opened`` = (state hash, binding hash,
        state expiry) set when a start link is opened. Terminal moves erase the flow's
        encrypted secrets. Returns the moved flow, or None when nothing matched."""

    async def flow_secrets(self, flow_id: str) -> EncryptedBlob | None: ...

    async def purge_flows(self, *, now: float, before: float, stuck_before: float) -> tuple[int, int]:
        """Housekeeping, one write: flows whose deadline is before ``before`` and that
        nobody ended (pending, started: their requester's node is gone) move to expired,
        erasing their sealed verifier; then flows whose deadline is before ``before`` are
        deleted (exchanging ones only before ``stuck_before``: their code exchange may
        still be running). Returns (expired, deleted)."""


class KeyedLock(Protocol):
    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """Exclusive per key: one holder at a time, waiters queue."""


class Links(Protocol):
    """The links roomsvc hands out for its own OAuth redirect. Built by the composition
    root from the public URL and the HTTP routes, so the domain knows no path."""

    def start_url(self, ticket: str) -> str:
        """The one-time start link a person opens to consent."""

    def callback_url(self) -> str:
        """The redirect URI registered with providers: where they send the person back."""
