"""The bundle of wired services that transports receive from the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from roomsvc.domain.audit import Auditor
from roomsvc.domain.headers import HeaderService
from roomsvc.domain.housekeeping import AuditPruner
from roomsvc.domain.key_admin import KeyAdministration
from roomsvc.domain.oauth.service import OAuthService
from roomsvc.domain.principal import Principal
from roomsvc.domain.project_secrets import ProjectSecretService
from roomsvc.domain.revocation import TokenService
from roomsvc.domain.rooms import RoomService
from roomsvc.domain.secret_requests import SecretRequestService
from roomsvc.domain.secrets import SecretService
from roomsvc.domain.service_catalog import ServiceCatalog
from roomsvc.domain.service_supervisor import ServiceSupervisor
from roomsvc.domain.service_templates import ServiceInstaller


@dataclass(frozen=True)
class Services:
    """Every field is set: the composition root builds each service in dependency order
    (:func:`roomsvc.app.open_runtime`), so nothing here is joined or filled in later."""

    rooms: RoomService
    #: callers' secret operations, charged to the caller's rate limit
    secrets: SecretService
    project_secrets: ProjectSecretService
    #: master keys (status, rotation, retirement) and backups, for operators
    key_admin: KeyAdministration
    auditor: Auditor
    #: verify a participant token and return who it names (raises Unauthenticated)
    authenticate: Callable[[str], Principal]
    #: the base of links roomsvc hands out
    public_url: Callable[[], str]
    #: header injection for toolkits (HEADER:FORMAT specs)
    headers: HeaderService
    #: OAuth flows between participants and the credentials they store
    oauth: OAuthService
    #: request_secret / provide_secret between participants
    secret_requests: SecretRequestService
    #: audit retention: ``roomsvc audit prune`` (operator) and the server's timed prune
    audit_pruner: AuditPruner
    #: token revocation and session expiry (authenticate checks it too)
    tokens: TokenService
    # -- services (issue 13) --
    #: room service specs (operators)
    service_catalog: ServiceCatalog
    #: running room services (start, stop, status, logs)
    service_supervisor: ServiceSupervisor
    #: ServiceTemplate installs (secret variables stored as room secrets)
    service_installer: ServiceInstaller
