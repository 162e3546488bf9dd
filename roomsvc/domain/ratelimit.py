"""Per-identity rate limits: token buckets keyed by (class, room, identity).

Pure: no I/O, no tasks, time comes from the :class:`~roomsvc.clock.Clock`. A bucket holds
up to ``burst`` tokens and gains ``rate`` tokens a second; each operation spends one.
Over the limit the caller gets :class:`~roomsvc.errors.RateLimited` (an ``overloaded``
error, code 1010) with ``retry_after``: the seconds until a token is available.

Memory is bounded: buckets live in one LRU-ordered map per class. A bucket that has
refilled to ``burst`` is the same as no bucket, so idle ones are dropped from the front
of the map on every call; when the map still holds ``max_buckets``, the least recently
used bucket goes (that identity gets a fresh burst: the least harm we can choose).

The limits are per node (like presence): behind a load balancer each node counts alone.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from roomsvc.clock import Clock
from roomsvc.errors import RateLimited

#: the three classes of limited operations (names of their ``[limits]`` settings)
SECRET_OPS = "secret_ops"
FLOWS = "flows"
MESSAGES = "messages"
CLASSES = (SECRET_OPS, FLOWS, MESSAGES)

_WHAT = {
    SECRET_OPS: "secret operations",
    FLOWS: "OAuth token and secret requests",
    MESSAGES: "messages",
}


@dataclass(frozen=True)
class Rate:
    """``rate`` tokens a second, at most ``burst`` at once; ``rate == 0`` turns the class off."""

    rate: float
    burst: int

    @property
    def off(self) -> bool:
        return self.rate <= 0


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class TokenBuckets:
    """The buckets of one class."""

    def __init__(self, limit: Rate, *, clock: Clock, max_buckets: int) -> None:
        self.limit = limit
        self._clock = clock
        self._max = max(1, max_buckets)
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def spend(self, key: tuple[str, str]) -> float:
        """Take one token for ``key``. Returns 0.0 when taken, else the seconds until one is
        available (nothing is taken then)."""
        if self.limit.off:
            return 0.0
        now = self._clock.monotonic()
        bucket = self._buckets.pop(key, None)
        self._drop_idle(now)
        if bucket is None:
            bucket = _Bucket(float(self.limit.burst), now)
        else:
            bucket.tokens = min(float(self.limit.burst), bucket.tokens + (now - bucket.at) * self.limit.rate)
            bucket.at = now
        self._buckets[key] = bucket  # most recently used: at the end
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.limit.rate

    def _drop_idle(self, now: float) -> None:
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            full = oldest.tokens + (now - oldest.at) * self.limit.rate >= self.limit.burst
            if not full and len(self._buckets) < self._max:
                # not idle, and room for one more: the rest were used even later
                return
            del self._buckets[key]


class RateLimiter:
    """The three classes together; services call :meth:`check` once per public method."""

    def __init__(self, limits: dict[str, Rate] | None = None, *, clock: Clock | None = None, max_buckets: int = 100_000) -> None:
        active = {name: limit for name, limit in (limits or {}).items() if not limit.off}
        unknown = set(active) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown rate limit class {sorted(unknown)[0]!r}")
        self._classes: dict[str, TokenBuckets] = {}
        if active and clock is None:
            raise ValueError("a rate limiter with limits needs a clock")
        if clock is not None:
            self._classes = {name: TokenBuckets(limit, clock=clock, max_buckets=max_buckets) for name, limit in active.items()}

    @classmethod
    def off(cls) -> "RateLimiter":
        """No limits (the default of services built without one, e.g. in unit tests)."""
        return cls()

    def buckets(self, kind: str) -> int:
        """How many buckets the class holds now (a figure for tests and metrics)."""
        found = self._classes.get(kind)
        return len(found) if found is not None else 0

    def check(self, kind: str, room: str | None, identity: str) -> None:
        """Spend one ``kind`` token of ``identity`` in ``room``.

        Raises:
            RateLimited: no token left; ``retry_after`` says when one will be.
        """
        buckets = self._classes.get(kind)
        if buckets is None:
            return
        wait = buckets.spend((room or "", identity))
        if wait > 0:
            # round up so a client that waits exactly this long gets its token
            hint = math.ceil(wait * 10) / 10
            raise RateLimited(
                f"too many {_WHAT[kind]} by {identity!r}: at most {buckets.limit.burst} at once and "
                f"{buckets.limit.rate:g} a second (limits.{kind}_rate); retry after {hint:g} s",
                retry_after=hint,
            )
