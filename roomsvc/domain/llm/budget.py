"""Tokens used today, per identity and per room, against the daily budgets.

A day is a UTC calendar day. The ledger holds today's totals in memory; a total it has
not seen yet is read once from storage (the service seeds it), so a restart keeps
counting where it was. Calls in flight at the same moment are each checked against the
total before any of them is settled, so a budget can be overrun by those calls' tokens:
the check refuses the *next* call, it cannot know how long an answer will be.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

IDENTITY = "identity"
ROOM = "room"


def utc_day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def seconds_to_next_day(epoch: float) -> float:
    return 86400.0 - (epoch % 86400.0)


@dataclass(frozen=True)
class Budgets:
    """Tokens a day; 0 = no budget."""

    identity_daily_tokens: int = 0
    room_daily_tokens: int = 0

    def limit(self, kind: str) -> int:
        return self.identity_daily_tokens if kind == IDENTITY else self.room_daily_tokens


class Ledger:
    def __init__(self) -> None:
        self._day = ""
        self._totals: dict[tuple[str, str], int] = {}

    def _roll(self, day: str) -> None:
        if day != self._day:
            self._day = day
            self._totals.clear()

    def known(self, day: str, kind: str, name: str) -> bool:
        self._roll(day)
        return (kind, name) in self._totals

    def seed(self, day: str, kind: str, name: str, total: int) -> None:
        self._roll(day)
        self._totals.setdefault((kind, name), total)

    def total(self, day: str, kind: str, name: str) -> int:
        self._roll(day)
        return self._totals.get((kind, name), 0)

    def add(self, day: str, identity: str, room: str, tokens: int) -> None:
        self._roll(day)
        for key in ((IDENTITY, identity), (ROOM, room)):
            if key in self._totals:
                self._totals[key] += tokens
