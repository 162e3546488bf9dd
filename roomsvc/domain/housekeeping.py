"""Periodic housekeeping the server runs: purging dead OAuth flows and old audit lines.

The composition root calls :meth:`FlowPurger.purge` and :meth:`AuditPruner.prune` on
timers (``oauth.flow_purge_interval``, ``secrets.audit_prune_interval``); operators prune
the audit log on demand with ``roomsvc audit prune``. Both go through the store's write
path, so they interleave with other writes instead of blocking them.

Audit retention rules (``secrets.audit_retention``):

* 0 (the default) keeps every line forever: a prune is refused;
* a prune never deletes a line younger than the retention, whatever it is asked
  (``older_than`` below the retention is refused, not clamped: the operator learns why);
* the prune is itself audited, and its first line is written in the same transaction as
  the first deletion, so no line is deleted without a record of who deleted it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.oauth.ports import FlowRepository
from roomsvc.domain.ports import AuditRecord
from roomsvc.domain.principal import Principal
from roomsvc.errors import InvalidRequest, InvalidState, PermissionDenied

#: the actor named in the audit log for the server's own timed prunes
HOUSEKEEPING_IDENTITY = "roomsvc:housekeeping"


class FlowPurger:
    def __init__(self, *, flows: FlowRepository, clock: Clock, grace: float, exchange_allowance: float) -> None:
        """``grace``: how long after its deadline a flow's row stays; ``exchange_allowance``:
        how long a code exchange that began before the deadline may still be running."""
        self._flows = flows
        self._clock = clock
        self._grace = grace
        self._exchange_allowance = exchange_allowance

    async def purge(self) -> tuple[int, int]:
        """Expire flows past their deadline and delete old ones: (expired, deleted)."""
        now = self._clock.now()
        return await self._flows.purge_flows(
            now=now, before=now - self._grace, stuck_before=now - max(self._grace, self._exchange_allowance)
        )


@dataclass(frozen=True)
class PruneReport:
    """What a prune deleted (or, dry, would delete): never the lines themselves."""

    cutoff: float
    deleted: int = 0
    oldest: float | None = None
    newest: float | None = None
    by_action: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def add(self, other: "PruneReport") -> "PruneReport":
        actions = dict(self.by_action)
        for action, count in other.by_action.items():
            actions[action] = actions.get(action, 0) + count
        times = [t for t in (self.oldest, self.newest, other.oldest, other.newest) if t is not None]
        return PruneReport(
            cutoff=self.cutoff, deleted=self.deleted + other.deleted, oldest=min(times) if times else None,
            newest=max(times) if times else None, by_action=actions, dry_run=self.dry_run,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff, "deleted": self.deleted, "oldest": self.oldest, "newest": self.newest,
            "by_action": dict(sorted(self.by_action.items())), "dry_run": self.dry_run,
        }


class AuditPruneRepository(Protocol):
    async def count_audit(self, *, before: float) -> PruneReport:
        """What deleting lines with ``time < before`` would delete."""

    async def prune_audit(self, *, before: float, batch: int, audit: AuditRecord | None) -> PruneReport:
        """Delete at most ``batch`` of the oldest lines with ``time < before`` in one write,
        storing ``audit`` (when given) in the same transaction."""


class AuditPruner:
    def __init__(
        self, *, repo: AuditPruneRepository, auditor: Auditor, clock: Clock, retention: float, batch: int = 5000
    ) -> None:
        self._repo = repo
        self._audit = auditor
        self._clock = clock
        self.retention = retention
        self._batch = max(1, batch)

    async def prune(self, caller: Principal | str, *, older_than: float | None = None, dry_run: bool = False) -> PruneReport:
        """Delete audit lines older than ``older_than`` seconds (default: the retention).

        ``caller`` is an operator's principal, or :data:`HOUSEKEEPING_IDENTITY` for the
        server's own timer.

        Raises:
            PermissionDenied: not an operator token (audited).
            InvalidState: no retention is configured (keep forever).
            InvalidRequest: ``older_than`` is below the retention, or not a number.
        """
        if isinstance(caller, Principal) and not caller.is_operator:
            await self._audit.record(caller, None, "audit.prune", "admin", "denied", "needs an operator token")
            raise PermissionDenied("pruning the audit log needs an operator token (admin API, no room)")
        if self.retention <= 0:
            raise InvalidState("secrets.audit_retention is 0: audit lines are kept forever, nothing may be pruned")
        age = self.retention if older_than is None else _seconds(older_than)
        if age < self.retention:
            raise InvalidRequest(
                f"--older-than {age:g} s is below the audit retention of {self.retention:g} s "
                "(secrets.audit_retention): lines younger than the retention are never deleted"
            )
        cutoff = self._clock.now() - age
        if dry_run:
            found = await self._repo.count_audit(before=cutoff)
            return PruneReport(cutoff, found.deleted, found.oldest, found.newest, found.by_action, dry_run=True)
        channel = "admin" if isinstance(caller, Principal) else "housekeeping"
        first: AuditRecord | None = self._audit.line(caller, None, "audit.prune", channel, "started", f"lines before {cutoff:.3f}")
        report = PruneReport(cutoff)
        while True:
            step = await self._repo.prune_audit(before=cutoff, batch=self._batch, audit=first)
            first = None  # written with the first batch, fail closed: no record, no deletion
            report = report.add(step)
            if step.deleted < self._batch:
                break
        await self._audit.record(caller, None, "audit.prune", channel, "ok", f"deleted {report.deleted} lines before {cutoff:.3f}")
        return report


def _seconds(value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value or value < 0:
        raise InvalidRequest("'older_than' must be a number of seconds, 0 or more")
    return float(value)
