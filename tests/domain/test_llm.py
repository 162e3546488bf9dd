"""The LLM proxy's rules without a server: the grant decision, usage read from every shape
the providers send (split anywhere), and the service's budgets, rate and key cache on a
fake clock with in-memory fakes behind its ports."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest

from roomsvc.clock import FakeClock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.llm.budget import Budgets, seconds_to_next_day, utc_day
from roomsvc.domain.llm.grant import ANTHROPIC, OPENAI, decide, endpoint, model_matches
from roomsvc.domain.llm.ports import UsageRow, UsageSummary
from roomsvc.domain.llm.service import LlmConfig, LlmService, ProviderConfig
from roomsvc.domain.llm.usage import BodyScanner, SseScanner, Usage
from roomsvc.domain.policy import Outcome
from roomsvc.domain.principal import Principal
from roomsvc.domain.project_secrets import KeysBag
from roomsvc.domain.ratelimit import Rate
from roomsvc.errors import BudgetExceeded, DependencyMissing, NotFound, PermissionDenied, RateLimited, Unauthenticated
from roomsvc.ids import Identity, RoomName


def who(llm: Any = None, *, identity: str = "alice", room: str | None = "room1", expires_at: float | None = None) -> Principal:
    api = {} if llm is None else {"llm": llm}
    return Principal(Identity(identity), RoomName(room) if room else None, api=MappingProxyType(api), expires_at=expires_at)


# -- the grant ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("principal", "provider", "model", "configured", "outcome"), [
    (who({}), OPENAI, "gpt-4o", (), Outcome.OK),
    (who(None), OPENAI, "gpt-4o", (), Outcome.DENIED),
    (who({}, room=None), OPENAI, "gpt-4o", (), Outcome.DENIED),
    (who({}, expires_at=10.0), OPENAI, "gpt-4o", (), Outcome.UNAUTHENTICATED),
    (who(True), OPENAI, "gpt-4o", (), Outcome.DENIED),
    (who({"providers": ["anthropic"]}), OPENAI, "gpt-4o", (), Outcome.DENIED),
    (who({"providers": "openai"}), OPENAI, "gpt-4o", (), Outcome.DENIED),  # a string is not a list
    (who({"providers": ["openai"]}), OPENAI, "gpt-4o", (), Outcome.OK),
    (who({"models": ["gpt-4o-mini"]}), OPENAI, "gpt-4o", (), Outcome.DENIED),
    (who({"models": ["gpt-4o*"]}), OPENAI, "gpt-4o-mini", (), Outcome.OK),
    (who({"models": ["*"]}), OPENAI, "o1", ("gpt-*",), Outcome.DENIED),  # a grant never widens the settings
    (who({}), OPENAI, "gpt-4o", ("gpt-*",), Outcome.OK),
    (who({"models": ["gpt-4o"]}), OPENAI, None, (), Outcome.OK),  # model lists name no model
    (who({}), OPENAI, "bad\nmodel", (), Outcome.INVALID),
    (who({}), OPENAI, "", (), Outcome.INVALID),
])
def test_grant_decisions(principal: Principal, provider: str, model: str | None, configured: tuple[str, ...],
                         outcome: Outcome) -> None:
    assert decide(principal, provider, model, configured_models=configured, now=100.0).outcome is outcome


def test_model_patterns_are_names_or_prefixes() -> None:
    assert model_matches("gpt-4o", ["gpt-4o"]) and model_matches("gpt-4o-mini", ["gpt-4o*"])
    assert not model_matches("gpt-4o-mini", ["gpt-4o"]) and not model_matches("x-gpt-4o", ["gpt-4o*"])
    assert not model_matches("gpt-4o", ["gpt-4?"])


def test_only_known_endpoints_are_forwarded() -> None:
    assert endpoint(OPENAI, "POST", "chat/completions") is not None
    assert endpoint(ANTHROPIC, "POST", "v1/messages") is not None
    for provider, method, path in [(OPENAI, "GET", "chat/completions"), (OPENAI, "POST", "files"),
                                   (OPENAI, "POST", "chat/completions/../../files"), (ANTHROPIC, "POST", "v1/complete"),
                                   (ANTHROPIC, "POST", "chat/completions"), ("other", "POST", "v1/messages")]:
        assert endpoint(provider, method, path) is None, (provider, method, path)


# -- usage -----------------------------------------------------------------------------------------


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = ""
    for name, data in events:
        out += (f"event: {name}\n" if name else "") + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
    return out.encode()


OPENAI_CHAT_STREAM = _sse([
    (None, {"choices": [{"delta": {"content": "Hi"}}], "usage": None}),
    (None, {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}),
    (None, "[DONE]"),
])
OPENAI_RESPONSES_STREAM = _sse([
    ("response.created", {"type": "response.created", "response": {"usage": None}}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
    ("response.completed", {"type": "response.completed", "response": {"usage": {"input_tokens": 9, "output_tokens": 4}}}),
])
ANTHROPIC_STREAM = _sse([
    ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1,
                                                                      "cache_read_input_tokens": 3}}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "usage"}}),
    ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 6}}),
    ("message_stop", {"type": "message_stop"}),
])


@pytest.mark.parametrize(("stream", "expected"), [
    (OPENAI_CHAT_STREAM, Usage(11, 5, True)),
    (OPENAI_RESPONSES_STREAM, Usage(9, 4, True)),
    (ANTHROPIC_STREAM, Usage(15, 6, True)),
    (OPENAI_CHAT_STREAM.replace(b"\n", b"\r\n"), Usage(11, 5, True)),
    (_sse([(None, {"choices": []}), (None, "[DONE]")]), Usage()),  # a stream without usage reports none
])
def test_stream_usage_whatever_the_chunk_boundaries(stream: bytes, expected: Usage) -> None:
    whole = SseScanner()
    whole.feed(stream)
    assert whole.usage() == expected
    for cut in range(1, len(stream)):
        split = SseScanner()
        split.feed(stream[:cut])
        split.feed(stream[cut:])
        assert split.usage() == expected, cut
    one_by_one = SseScanner()
    for i in range(len(stream)):
        one_by_one.feed(stream[i:i + 1])
    assert one_by_one.usage() == expected


def test_an_overlong_line_is_skipped_and_memory_stays_bounded() -> None:
    scanner = SseScanner(max_line=64)
    scanner.feed(b"data: " + b"x" * 1000)
    scanner.feed(b"y" * 1000 + b"\n\n")
    scanner.feed(_sse([(None, {"usage": {"prompt_tokens": 1, "completion_tokens": 2}})]))
    assert scanner.usage() == Usage(1, 2, True)
    assert len(scanner._buffer) == 0


@pytest.mark.parametrize(("body", "expected"), [
    ({"usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}, Usage(11, 5, True)),
    ({"usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}}, Usage(9, 4, True)),
    ({"usage": {"prompt_tokens": 7, "total_tokens": 7}}, Usage(7, 0, True)),  # embeddings
    ({"usage": {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 2}}, Usage(14, 6, True)),
    ({"input_tokens": 20}, Usage()),  # count_tokens: a count, not a use
    ({"usage": {"prompt_tokens": -1, "completion_tokens": True}}, Usage()),
    ({"error": {"message": "x"}}, Usage()),
])
def test_json_usage(body: dict[str, Any], expected: Usage) -> None:
    scanner = BodyScanner(1 << 20)
    raw = json.dumps(body).encode()
    scanner.feed(raw[:5])
    scanner.feed(raw[5:])
    assert scanner.usage() == expected


def test_a_json_answer_over_the_scan_limit_is_not_read() -> None:
    scanner = BodyScanner(16)
    scanner.feed(json.dumps({"usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode())
    assert scanner.truncated and scanner.usage() == Usage()


def test_days_are_utc() -> None:
    assert utc_day(0) == "1970-01-01" and utc_day(86399.5) == "1970-01-01" and utc_day(86400) == "1970-01-02"
    assert seconds_to_next_day(86400 * 3 + 3600) == 82800


# -- the service -----------------------------------------------------------------------------------


class FakeUsage:
    def __init__(self, stored: int = 0) -> None:
        self.rows: list[UsageRow] = []
        self.audit: list[Any] = []
        self.stored = stored

    async def record_usage(self, row: UsageRow, audit: Any) -> None:
        self.rows.append(row)
        self.audit.append(audit)

    async def day_total(self, day: str, *, identity: str | None = None, room: str | None = None) -> int:
        return self.stored + sum(r.input_tokens + r.output_tokens for r in self.rows
                                 if r.day == day and (identity in (None, r.identity)) and (room in (None, r.room)))

    async def usage_report(self, **kw: Any) -> list[UsageSummary]:
        return []

    async def append(self, records: Any) -> None:  # the auditor's repository
        self.audit.extend(records)


class FakeSecrets:
    def __init__(self, data: dict[str, str] | None) -> None:
        self.data = data
        self.reads = 0

    async def resolve_keys(self, id: str, *, service: str) -> KeysBag:
        self.reads += 1
        if self.data is None:
            raise NotFound(f"project keys secret {id!r} not found")
        return KeysBag(self.data)


def service(clock: FakeClock, repo: FakeUsage, secrets: FakeSecrets | None = None, **config: Any) -> LlmService:
    providers = {OPENAI: ProviderConfig(OPENAI, "https://api.openai.com/v1", "llm", "OPENAI_API_KEY"),
                 ANTHROPIC: ProviderConfig(ANTHROPIC, "", "llm", "ANTHROPIC_API_KEY")}
    return LlmService(repo=repo, project_secrets=secrets or FakeSecrets({"OPENAI_API_KEY": "sk-x"}),  # type: ignore[arg-type]
                      auditor=Auditor(repo, clock), clock=clock, config=LlmConfig(providers=providers, **config))


CHAT = endpoint(OPENAI, "POST", "chat/completions")
assert CHAT is not None


async def test_budgets_per_identity_and_per_room_renew_each_utc_day() -> None:
    clock, repo = FakeClock(start=86400 * 20000 + 3600), FakeUsage()
    svc = service(clock, repo, budgets=Budgets(identity_daily_tokens=100, room_daily_tokens=150))
    alice, bob = who({}), who({}, identity="bob")
    await svc.settle(await svc.admit(alice, OPENAI, CHAT, "gpt-4o", stream=False), Usage(60, 40, True), "ok")
    with pytest.raises(BudgetExceeded) as over:
        await svc.admit(alice, OPENAI, CHAT, "gpt-4o", stream=False)
    assert isinstance(over.value, RateLimited) and over.value.retry_after == 86400 - 3600
    await svc.settle(await svc.admit(bob, OPENAI, CHAT, "gpt-4o", stream=False), Usage(50, 0, True), "ok")
    with pytest.raises(BudgetExceeded) as room_over:  # the room's 150 are used up, for everyone in it
        await svc.admit(who({}, identity="carol"), OPENAI, CHAT, "gpt-4o", stream=False)
    assert "room 'room1'" in room_over.value.message
    await svc.admit(who({}, identity="carol", room="room2"), OPENAI, CHAT, "gpt-4o", stream=False)
    assert [a.outcome for a in repo.audit if a.action == "llm"] == ["ok", "over_budget", "ok", "over_budget"]
    clock.advance(86400 - 3600)  # midnight UTC
    await svc.admit(alice, OPENAI, CHAT, "gpt-4o", stream=False)


async def test_budgets_count_what_was_stored_before_a_restart() -> None:
    clock = FakeClock()
    svc = service(clock, FakeUsage(stored=100), budgets=Budgets(identity_daily_tokens=100))
    with pytest.raises(BudgetExceeded):
        await svc.admit(who({}), OPENAI, CHAT, "gpt-4o", stream=False)


async def test_the_request_rate_is_per_identity_and_room() -> None:
    clock, repo = FakeClock(), FakeUsage()
    svc = service(clock, repo, requests=Rate(1.0, 2))
    for _ in range(2):
        await svc.admit(who({}), OPENAI, CHAT, "gpt-4o", stream=False)
    with pytest.raises(RateLimited) as limited:
        await svc.admit(who({}), OPENAI, CHAT, "gpt-4o", stream=False)
    assert limited.value.retry_after == 1.0 and not isinstance(limited.value, BudgetExceeded)
    await svc.admit(who({}, identity="bob"), OPENAI, CHAT, "gpt-4o", stream=False)
    clock.advance(1.0)
    await svc.admit(who({}), OPENAI, CHAT, "gpt-4o", stream=False)


async def test_refusals_are_typed_and_denials_audited() -> None:
    clock, repo = FakeClock(), FakeUsage()
    svc = service(clock, repo)
    with pytest.raises(PermissionDenied):
        await svc.admit(who(None), OPENAI, CHAT, "gpt-4o", stream=False)
    with pytest.raises(Unauthenticated):
        await svc.admit(who({}, expires_at=clock.now() - 1), OPENAI, CHAT, "gpt-4o", stream=False)
    with pytest.raises(NotFound):  # configured without a base URL: off
        await svc.admit(who({}), ANTHROPIC, CHAT, "claude", stream=False)
    assert [(a.actor, a.outcome, a.channel) for a in repo.audit] == [("alice", "denied", OPENAI)]


async def test_the_provider_key_is_cached_and_its_absence_named_not_shown() -> None:
    clock, repo, secrets = FakeClock(), FakeUsage(), FakeSecrets({"OPENAI_API_KEY": "sk-canary-value"})
    svc = service(clock, repo, secrets, key_cache_ttl=60.0)
    key = await svc.provider_key(OPENAI)
    assert key.reveal() == "sk-canary-value" and "sk-canary" not in repr(key) and "sk-canary" not in str(key)
    await svc.provider_key(OPENAI)
    assert secrets.reads == 1
    clock.advance(61)
    await svc.provider_key(OPENAI)
    assert secrets.reads == 2
    with pytest.raises(DependencyMissing) as missing:
        await service(clock, repo, FakeSecrets(None)).provider_key(OPENAI)
    assert "'llm'" in missing.value.message and "OPENAI_API_KEY" in missing.value.message
    with pytest.raises(DependencyMissing) as no_key:
        await service(clock, repo, FakeSecrets({"OTHER": "sk-canary-value"})).provider_key(OPENAI)
    assert "sk-canary" not in no_key.value.message


async def test_a_flood_of_denied_calls_is_rate_limited_before_it_fills_the_audit_log() -> None:
    clock, repo = FakeClock(), FakeUsage()
    svc = service(clock, repo, requests=Rate(0.01, 3))
    for _ in range(3):
        with pytest.raises(PermissionDenied):
            await svc.admit(who(None), OPENAI, CHAT, "gpt-4o", stream=False)
    for _ in range(10):
        with pytest.raises(RateLimited):
            await svc.admit(who(None), OPENAI, CHAT, "gpt-4o", stream=False)
    assert len(repo.audit) == 3
