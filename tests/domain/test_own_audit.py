"""Auditor.own_lines: the rule behind the console's activity panel, with a careless store.

The store here ignores the filters it is given, as a buggy or new backend might: the
domain's own check must still keep every other identity's and room's lines out."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from roomsvc.clock import SystemClock
from roomsvc.domain.audit import MAX_OWN_LINES, Auditor
from roomsvc.domain.ports import AuditRecord
from roomsvc.domain.principal import Principal
from roomsvc.errors import PermissionDenied
from roomsvc.ids import Identity, RoomName

LINES = [
    AuditRecord(1.0, "r1", "alice", "alice", "db", "create", "http", "ok"),
    AuditRecord(2.0, "r1", "agent", "alice", "db", "read", "ws", "ok"),
    AuditRecord(3.0, "r1", "bob", "bob", "bobs", "create", "http", "ok"),
    AuditRecord(4.0, "r2", "alice", "alice", "other-room", "create", "http", "ok"),
    AuditRecord(5.0, "r1", "alice", "bob", "bobs", "read", "http", "denied"),
    AuditRecord(6.0, None, "operator", None, "*", "rotate", "http", "ok"),
]


class CarelessStore:
    def __init__(self) -> None:
        self.asked: dict[str, Any] = {}

    async def append(self, records: Sequence[AuditRecord]) -> None:
        raise AssertionError("own_lines writes nothing")

    async def query(self, *, room: str | None = None, identity: str | None = None, since: float | None = None,
                    limit: int = 1000) -> list[AuditRecord]:
        self.asked = {"room": room, "identity": identity, "limit": limit}
        return list(LINES)


def principal(identity: str, room: str | None = "r1", api: tuple[str, ...] = ("secrets",)) -> Principal:
    return Principal(Identity(identity), RoomName(room) if room else None, api={a: {} for a in api})


async def test_only_the_callers_lines_in_its_room() -> None:
    store = CarelessStore()
    lines = await Auditor(store, SystemClock()).own_lines(principal("alice"), "r1", limit=10_000)
    assert [line.time for line in lines] == [1.0, 2.0, 5.0]
    assert store.asked == {"room": "r1", "identity": "alice", "limit": MAX_OWN_LINES}


@pytest.mark.parametrize("who, room", [
    (principal("alice", "r2"), "r1"),  # a token for another room
    (principal("alice", None, ("secrets", "admin")), "r1"),  # a project token
    (principal("alice", "r1", ()), "r1"),  # no secrets grant
])
async def test_who_is_refused(who: Principal, room: str) -> None:
    with pytest.raises(PermissionDenied):
        await Auditor(CarelessStore(), SystemClock()).own_lines(who, room)
