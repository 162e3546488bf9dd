"""The token bucket, on a fake clock: exact, and no sleeping."""

from __future__ import annotations

import pytest

from roomsvc.clock import FakeClock
from roomsvc.domain.ratelimit import FLOWS, MESSAGES, SECRET_OPS, Rate, RateLimiter
from roomsvc.errors import Overloaded, RateLimited


def limiter(clock: FakeClock, *, rate: float = 2.0, burst: int = 3, max_buckets: int = 100) -> RateLimiter:
    return RateLimiter({SECRET_OPS: Rate(rate, burst)}, clock=clock, max_buckets=max_buckets)


def test_a_burst_passes_then_the_next_call_waits_for_a_token() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    for _ in range(3):
        lim.check(SECRET_OPS, "r", "alice")
    with pytest.raises(RateLimited) as refused:
        lim.check(SECRET_OPS, "r", "alice")
    assert isinstance(refused.value, Overloaded) and refused.value.name == "rate_limited"
    assert refused.value.retry_after == 0.5  # one token at 2 a second
    assert "retry after 0.5 s" in refused.value.message and "limits.secret_ops_rate" in refused.value.message
    clock.advance(0.49)
    with pytest.raises(RateLimited):
        lim.check(SECRET_OPS, "r", "alice")
    clock.advance(0.01)
    lim.check(SECRET_OPS, "r", "alice")


def test_a_refused_call_takes_nothing_so_waiting_the_hint_is_enough() -> None:
    clock = FakeClock()
    lim = limiter(clock, rate=1.0, burst=1)
    lim.check(SECRET_OPS, "r", "alice")
    for _ in range(5):
        with pytest.raises(RateLimited) as refused:
            lim.check(SECRET_OPS, "r", "alice")
    clock.advance(refused.value.retry_after)
    lim.check(SECRET_OPS, "r", "alice")


def test_buckets_are_per_room_identity_and_class() -> None:
    clock = FakeClock()
    lim = RateLimiter({SECRET_OPS: Rate(1.0, 1), MESSAGES: Rate(1.0, 1)}, clock=clock)
    lim.check(SECRET_OPS, "r", "alice")
    lim.check(SECRET_OPS, "r", "bob")
    lim.check(SECRET_OPS, "other", "alice")
    lim.check(MESSAGES, "r", "alice")
    lim.check(FLOWS, "r", "alice")  # no limit configured for this class
    with pytest.raises(RateLimited):
        lim.check(SECRET_OPS, "r", "alice")


def test_refill_stops_at_the_burst() -> None:
    clock = FakeClock()
    lim = limiter(clock, rate=10.0, burst=2)
    clock.advance(3600)
    lim.check(SECRET_OPS, "r", "a")
    lim.check(SECRET_OPS, "r", "a")
    with pytest.raises(RateLimited):
        lim.check(SECRET_OPS, "r", "a")


def test_idle_buckets_are_dropped() -> None:
    clock = FakeClock()
    lim = limiter(clock, rate=1.0, burst=2)
    for i in range(50):
        lim.check(SECRET_OPS, "r", f"id{i}")
    assert lim.buckets(SECRET_OPS) == 50
    clock.advance(1.0)  # every bucket is full again: the same as no bucket
    lim.check(SECRET_OPS, "r", "late")
    assert lim.buckets(SECRET_OPS) == 1


def test_the_number_of_buckets_is_bounded() -> None:
    clock = FakeClock()
    lim = limiter(clock, rate=0.001, burst=1, max_buckets=10)
    for i in range(1000):
        lim.check(SECRET_OPS, "r", f"id{i}")
        assert lim.buckets(SECRET_OPS) <= 10
    # the most recent ones are still counted
    with pytest.raises(RateLimited):
        lim.check(SECRET_OPS, "r", "id999")


def test_rate_zero_turns_a_class_off() -> None:
    lim = RateLimiter({SECRET_OPS: Rate(0.0, 0)}, clock=FakeClock())
    for _ in range(1000):
        lim.check(SECRET_OPS, "r", "alice")
    assert lim.buckets(SECRET_OPS) == 0
    RateLimiter.off().check(MESSAGES, None, "x")
