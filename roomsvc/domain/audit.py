"""Audit lines for every secret operation: who, where, what, how it ended. Never a value.

Writing is *fail closed*: if the line cannot be stored, the operation it describes
fails. The store commits lines in groups (one fsync for many requests).
"""

from __future__ import annotations

from typing import Protocol

from roomsvc.clock import Clock
from roomsvc.domain.observe import NOOP, Observer
from roomsvc.domain.ports import AuditRecord, AuditRepository
from roomsvc.domain.principal import Principal

#: the most lines :meth:`Auditor.own_lines` returns
MAX_OWN_LINES = 200


class Place(Protocol):
    """Where an audited operation happened; read only, and any part may be unknown.

    Any value with these attributes will do (a secret's address or record, a flow's
    place): the auditor knows no service, so every service can use it without a cycle."""

    @property
    def room(self) -> str | None: ...

    @property
    def owner(self) -> str | None: ...

    @property
    def id(self) -> str: ...


class Auditor:
    def __init__(self, repo: AuditRepository, clock: Clock, observer: Observer = NOOP) -> None:
        self._repo = repo
        self._clock = clock
        #: every line is also counted by action, channel and outcome (never by who or what)
        self.observer = observer

    def line(
        self, caller: Principal | str, place: Place | None, action: str, channel: str, outcome: str, detail: str = ""
    ) -> AuditRecord:
        actor = caller.identity if isinstance(caller, Principal) else caller
        self.observer.audited(action, channel, outcome)
        # a denial is recorded before what the caller sent is validated: keep it short,
        # and show control characters as escapes so no line can forge another or a terminal
        return AuditRecord(
            time=self._clock.now(),
            room=_short(getattr(place, "room", None)),
            actor=_clean(actor),
            owner=_short(getattr(place, "owner", None)),
            secret_id=_short(getattr(place, "id", None)),
            action=_clean(action),
            channel=_clean(channel),
            outcome=_clean(outcome),
            detail=_clean(detail[:200]),
        )

    async def record(
        self, caller: Principal | str, place: Place | None, action: str, channel: str, outcome: str, detail: str = ""
    ) -> None:
        await self._repo.append([self.line(caller, place, action, channel, outcome, detail)])

    async def query(
        self, *, room: str | None = None, identity: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        return await self._repo.query(room=room, identity=identity, since=since, limit=limit)

    # -- the room console (issue 16) ---------------------------------------------------------

    async def own_lines(self, caller: Principal, room: str, *, limit: int = 50) -> list[AuditRecord]:
        """The caller's recent lines in its own room: what it did, and what was done with
        its secrets (``actor`` or ``owner`` is the caller). Never another identity's
        lines, never a value (lines hold none).

        Raises:
            PermissionDenied: a token for another room (or none), or without the secrets grant.
        """
        caller.require_room(room)
        caller.require_api("secrets")
        lines = await self._repo.query(room=room, identity=caller.identity, limit=max(1, min(limit, MAX_OWN_LINES)))
        # the store filters already; the rule is the domain's, so it is checked here too
        return [r for r in lines if r.room == room and caller.identity in (r.actor, r.owner)]


def _short(value: str | None, limit: int = 256) -> str | None:
    return None if value is None else _clean(value if len(value) <= limit else value[:limit] + "...")


def _clean(value: str) -> str:
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in value)
