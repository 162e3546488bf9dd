"""What the LLM proxy needs from storage: usage rows (written with their audit line in one
group-committed transaction), today's totals and reports."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import AsyncIterator, Protocol

from roomsvc.domain.ports import AuditRecord


@dataclass(frozen=True)
class UsageRow:
    time: float
    #: the UTC day of ``time`` (YYYY-MM-DD), the budgets' unit
    day: str
    room: str
    identity: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    #: ok, upstream_<status>, upstream_failed, timeout, cancelled
    outcome: str
    stream: bool


@dataclass(frozen=True)
class UsageSummary:
    room: str
    identity: str
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    first: float
    last: float

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "total_tokens": self.input_tokens + self.output_tokens}


class UsageRepository(Protocol):
    async def record_usage(self, row: UsageRow, audit: AuditRecord) -> None: ...

    async def day_total(self, day: str, *, identity: str | None = None, room: str | None = None) -> int: ...

    async def usage_report(
        self, *, room: str | None = None, identity: str | None = None, since: float | None = None
    ) -> list[UsageSummary]: ...


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:  # the headers hold the provider key
        return f"UpstreamRequest({self.method} {self.url}, <{len(self.body)} bytes>)"


class UpstreamAnswer(Protocol):
    status: int
    #: the answer's headers, as (name, value) pairs
    headers: list[tuple[str, str]]

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. Raises: Timeout (silence past the read timeout or the
        total), DependencyMissing (the connection broke)."""
        ...


class Upstream(Protocol):
    def send(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamAnswer]:
        """Open the exchange; leaving the context releases (or, unread, closes) it.

        Raises: Timeout, DependencyMissing (no answer)."""
        ...
