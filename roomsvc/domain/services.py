"""The bundle of wired services that transports receive from the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from roomsvc.domain.audit import Auditor
from roomsvc.domain.headers import HeaderService
from roomsvc.domain.housekeeping import AuditPruner
from roomsvc.domain.oauth_service import OAuthService
from roomsvc.domain.principal import Principal
from roomsvc.domain.project_secrets import ProjectSecretService
from roomsvc.domain.revocation import TokenService
from roomsvc.domain.rooms import RoomService
from roomsvc.domain.secret_requests import SecretRequestService
from roomsvc.errors import DependencyMissing
from roomsvc.domain.secrets import SecretService


class KeyAdmin(Protocol):
    async def status(self) -> list: ...
    async def rotate(self, *, progress: Callable[[int, int], Awaitable[None]] | None = None, batch: int = 200): ...
    async def retire(self, key_id: str) -> None: ...


@dataclass(frozen=True)
class Services:
    rooms: RoomService
    secrets: SecretService
    project_secrets: ProjectSecretService
    keys: KeyAdmin
    auditor: Auditor
    #: verify a participant token and return who it names (raises Unauthenticated)
    authenticate: Callable[[str], Principal]
    #: consistent copy of the database, by name inside server.backup_dir; returns its path
    backup: Callable[[str], Awaitable[str]]
    #: the base of links roomsvc hands out
    public_url: Callable[[], str]
    #: header injection for toolkits (HEADER:FORMAT specs)
    headers: HeaderService | None = None
    #: OAuth flows between participants and the credentials they store
    oauth: OAuthService | None = None
    #: request_secret / provide_secret between participants
    secret_requests: SecretRequestService | None = None
    #: audit retention: ``roomsvc audit prune`` (operator) and the server's timed prune
    audit_pruner: AuditPruner | None = None
    #: token revocation and session expiry (authenticate checks it too)
    tokens: TokenService | None = None

    # -- optional services, for the transports --------------------------------------------

    def require_oauth(self) -> OAuthService:
        if self.oauth is None:
            raise DependencyMissing("this server has no OAuth service")
        return self.oauth

    def require_secret_requests(self) -> SecretRequestService:
        if self.secret_requests is None:
            raise DependencyMissing("this server has no secret requests service")
        return self.secret_requests

    def require_audit_pruner(self) -> AuditPruner:
        if self.audit_pruner is None:
            raise DependencyMissing("this server has no audit pruner")
        return self.audit_pruner
    def require_tokens(self) -> TokenService:
        if self.tokens is None:
            raise DependencyMissing("this server has no token service")
        return self.tokens

    def require_headers(self) -> HeaderService:
        if self.headers is None:
            raise DependencyMissing("header injection is not enabled on this server")
        return self.headers
