"""The service specs of each room: created, listed, shown and deleted by operators only.

A spec arrives as a document (a mapping, or YAML text that the loader the composition
root passes in turns into one), is validated by :func:`parse_service_spec`, and is stored
as it was given. It holds references to secrets, never their values. Every change, and
every refusal, is audited with the channel ``admin``.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.ports import AuditRecord
from roomsvc.domain.principal import Principal
from roomsvc.domain.service_spec import SERVICE_NAME, ServiceSpec, SpecError, parse_service_spec
from roomsvc.errors import InvalidRequest, NotFound, PermissionDenied
from roomsvc.ids import parse_room

#: loads YAML (or JSON) text into a document; raises SpecError("spec", ...) when it cannot
DocumentLoader = Callable[[str], object]


@dataclass(frozen=True)
class ServiceRecord:
    room: str
    name: str
    #: the spec document as given (validated); references to secrets, never values
    spec: dict[str, Any]
    created_by: str
    created_at: float
    updated_at: float

    @property
    def id(self) -> str:  # for audit lines (the audit Place protocol)
        return self.name

    @property
    def owner(self) -> None:
        return None

    def parsed(self) -> ServiceSpec:
        return parse_service_spec(self.spec)

    def as_dict(self) -> dict[str, Any]:
        return {"room": self.room, "name": self.name, "spec": self.spec, "created_by": self.created_by,
                "created_at": self.created_at, "updated_at": self.updated_at}


class ServiceRepository(Protocol):
    async def put_service(self, record: ServiceRecord, *, replace: bool, audit: AuditRecord) -> ServiceRecord: ...

    async def get_service(self, room: str, name: str) -> ServiceRecord | None: ...

    async def list_services(self, room: str | None) -> list[ServiceRecord]: ...

    async def delete_service(self, room: str, name: str, *, audit: AuditRecord) -> bool: ...


@dataclass(frozen=True)
class _Place:
    room: str
    owner: None
    id: str


class ServiceCatalog:
    def __init__(self, *, store: ServiceRepository, auditor: Auditor, clock: Clock, load: DocumentLoader) -> None:
        self._store = store
        self._audit = auditor
        self._clock = clock
        self._load = load

    async def create(self, caller: Principal, room: str, document: object, *, replace: bool = False) -> ServiceRecord:
        """Validate and store a spec (YAML/JSON text or an already-loaded mapping).

        Raises:
            PermissionDenied: not an operator token (audited).
            SpecError: a field is wrong, named by its path. AlreadyExists: unless ``replace``.
        """
        room_ = await self.authorize(caller, room, "*", "service_create")
        doc = self._load(document) if isinstance(document, str) else document
        spec = parse_service_spec(doc)
        assert isinstance(doc, dict)  # parse_service_spec checked it is a mapping
        if doc.get("room") is not None and doc["room"] != room_:
            raise SpecError("room", f"names another room than {room_!r}, where the spec is being stored")
        now = self._clock.now()
        current = await self._store.get_service(room_, spec.name)
        record = ServiceRecord(room=room_, name=spec.name, spec=doc, created_by=caller.identity,
                               created_at=current.created_at if current else now, updated_at=now)
        action = "service_update" if current else "service_create"
        return await self._store.put_service(
            record, replace=replace, audit=self._audit.line(caller, _Place(room_, None, spec.name), action, "admin", "ok")
        )

    async def get(self, caller: Principal, room: str, name: str) -> ServiceRecord:
        room_ = await self.authorize(caller, room, name, "service_read")
        return await self.find(room_, name)

    async def list(self, caller: Principal, room: str | None) -> list[ServiceRecord]:
        room_ = await self.authorize(caller, room or "*", "*", "service_list")
        return await self._store.list_services(None if room is None else room_)

    async def delete(self, caller: Principal, room: str, name: str) -> None:
        room_ = await self.authorize(caller, room, name, "service_delete")
        line = self._audit.line(caller, _Place(room_, None, name), "service_delete", "admin", "ok")
        if not await self._store.delete_service(room_, name, audit=line):
            raise NotFound(f"no service {name!r} in room {room_!r}")

    async def audit(self, caller: Principal, room: str, name: str, action: str, outcome: str) -> None:
        """An audit line for an operation on a stored service (start, stop)."""
        await self._audit.record(caller, _Place(room, None, name), action, "admin", outcome)

    async def find(self, room: str, name: str) -> ServiceRecord:
        """A stored spec, for the runner (already authorized)."""
        found = await self._store.get_service(room, name)
        if found is None:
            raise NotFound(f"no service {name!r} in room {room!r}")
        return found

    async def all(self, room: str | None = None) -> builtins.list[ServiceRecord]:
        """Every stored spec (for ``services.autostart``)."""
        return await self._store.list_services(room)

    async def authorize(self, caller: Principal, room: str, name: str, action: str) -> str:
        """Refuse non-operators before looking at anything they sent (audited)."""
        if not caller.is_operator:
            shown = room[:128] if isinstance(room, str) else "*"
            await self._audit.record(caller, _Place(shown, None, str(name)[:128]), action, "admin", "denied", "not an operator token")
            raise PermissionDenied("services need an operator token (roomsvc token --operator)")
        if room == "*":
            return room
        room_ = parse_room(room)
        if name != "*" and not SERVICE_NAME.fullmatch(name):
            raise InvalidRequest("a service name uses lower-case letters, digits, '.', '_' and '-'")
        return room_


__all__ = ["DocumentLoader", "ServiceCatalog", "ServiceRecord", "ServiceRepository", "SpecError"]
