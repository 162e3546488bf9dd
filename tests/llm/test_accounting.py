"""What a call leaves behind: a usage row per identity, room, provider and model (shown by
``roomsvc llm usage``), an audit line, metrics; a client that goes away cancels the upstream
request; and the provider key appears in none of it (canary values), nor in any answer or
server log line."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.llm.conftest import ANTHROPIC_KEY, OPENAI_KEY, llm_token
from tests.llm.test_clients import anthropic_client, openai_client
from tests.support.llm_upstream import ANTHROPIC_USAGE, OPENAI_USAGE, StandIn
from tests.support.server import Server
from tests.support.waiting import until

HI = [{"role": "user", "content": "hi"}]
#: every answer body and header the tests below receive, for the canary check at the end
SEEN: list[str] = []


def _keep(*texts: Any) -> None:
    SEEN.extend(str(t) for t in texts)


async def test_calls_are_accounted_per_identity_room_provider_and_model(llm_server: Server, standin: StandIn) -> None:
    alice, bob = llm_token(llm_server, "alice", {}), llm_token(llm_server, "bob", {})
    async with openai_client(llm_server, alice) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
        _keep(raw.text, dict(raw.headers))
    async with anthropic_client(llm_server, alice) as client:
        async with client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=8, messages=HI) as stream:
            _keep(await stream.get_final_text())
    async with openai_client(llm_server, bob) as client:
        async for chunk in await client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True):
            _keep(chunk.model_dump_json())

    async def written() -> bool:  # usage rows are written while the next call is served
        return len(await _admin(llm_server, "/v1/admin/llm/usage")) == 3

    await until(written, "the three calls' usage rows")
    done = llm_server.cli("llm", "usage", "--json", token=llm_server.operator_token())
    assert done.returncode == 0, done.stderr
    _keep(done.stdout, done.stderr)
    rows = {(r["identity"], r["provider"], r["model"]): r for r in json.loads(done.stdout)}
    assert set(rows) == {("alice", "openai", "gpt-4o-mini"), ("alice", "anthropic", "claude-3-5-haiku-latest"),
                         ("bob", "openai", "gpt-4o-mini")}
    oa = rows[("alice", "openai", "gpt-4o-mini")]
    assert (oa["room"], oa["requests"], oa["input_tokens"], oa["output_tokens"], oa["total_tokens"]) == (
        "room1", 1, OPENAI_USAGE["prompt_tokens"], OPENAI_USAGE["completion_tokens"], OPENAI_USAGE["total_tokens"])
    an = rows[("alice", "anthropic", "claude-3-5-haiku-latest")]
    assert (an["input_tokens"], an["output_tokens"]) == (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"])
    # bob's usage came from the last chunk of a stream whose client never asked for it
    assert rows[("bob", "openai", "gpt-4o-mini")]["total_tokens"] == OPENAI_USAGE["total_tokens"]

    only_bob = llm_server.cli("llm", "usage", "--identity", "bob", token=llm_server.operator_token())
    assert only_bob.returncode == 0, only_bob.stderr
    lines = only_bob.stdout.decode().splitlines()
    assert lines[0].split() == ["ROOM", "IDENTITY", "PROVIDER", "MODEL", "CALLS", "INPUT", "OUTPUT", "TOTAL"]
    assert lines[1].split() == ["room1", "bob", "openai", "gpt-4o-mini", "1", "11", "5", "16"]
    assert lines[-1] == "1 calls, 16 tokens"
    later = llm_server.cli("llm", "usage", "--since", "2999-01-01", token=llm_server.operator_token())
    assert later.returncode == 0 and b"no LLM usage recorded" in later.stdout
    elsewhere = llm_server.cli("llm", "usage", "--room", "elsewhere", "--json", token=llm_server.operator_token())
    assert json.loads(elsewhere.stdout) == []


async def test_usage_report_needs_an_operator_and_a_good_since(llm_server: Server) -> None:
    refused = llm_server.cli("llm", "usage", token=llm_token(llm_server, "alice", {}, extra_api={"admin": {}}))
    assert refused.returncode == 1 and b"error [permission_denied]" in refused.stderr
    bad = llm_server.cli("llm", "usage", "--since", "yesterday", token=llm_server.operator_token())
    assert bad.returncode == 2 and b"--since" in bad.stderr


async def test_every_use_is_an_audit_line(llm_server: Server) -> None:
    done = llm_server.cli("audit", "--json", token=llm_server.operator_token())
    assert done.returncode == 0, done.stderr
    _keep(done.stdout)
    lines = [a for a in json.loads(done.stdout) if a["action"] == "llm"]
    alice_openai = [a for a in lines if a["actor"] == "alice" and a["channel"] == "openai"]
    assert alice_openai and alice_openai[0]["room"] == "room1" and alice_openai[0]["secret_id"] == "gpt-4o-mini"
    assert alice_openai[0]["outcome"] == "ok"
    assert "input_tokens=11 output_tokens=5" in alice_openai[0]["detail"]
    # the provider key was read by the server itself, from its project secret, and audited
    reads = [a for a in json.loads(done.stdout) if a["actor"] == "service:llm-proxy"]
    assert reads and reads[0]["secret_id"] == "llm" and reads[0]["outcome"] == "ok"


async def test_a_client_that_goes_away_cancels_the_upstream(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "quitter", {})
    standin.hold_streams, cancelled = True, standin.cancelled
    standin.gate.clear()
    standin.holding.clear()
    try:
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                f"{llm_server.url}/v1/llm/anthropic/v1/messages",
                json={"model": "claude-3-5-haiku-latest", "max_tokens": 8, "stream": True, "messages": HI},
                headers={"x-api-key": token, "anthropic-version": "2023-06-01"})
            assert response.status == 200
            first = await response.content.readany()
            _keep(first.decode())
            assert b"message_start" in first
            await until(standin.holding.is_set, "the stand-in holds its stream")
            response.close()  # the client goes away mid-answer
        await until(lambda: standin.cancelled > cancelled, "the upstream request is cancelled")
    finally:
        standin.hold_streams = False
        standin.gate.set()

    async def recorded() -> bool:
        return bool(await _admin(llm_server, "/v1/admin/llm/usage?identity=quitter"))

    await until(recorded, "the cancelled call's usage row")
    audit = await _admin(llm_server, "/v1/admin/audit?identity=quitter")
    assert [a["outcome"] for a in audit if a["action"] == "llm"] == ["cancelled"]
    # what the upstream reported before the client left is still counted (message_start's input)
    usage = await _admin(llm_server, "/v1/admin/llm/usage?identity=quitter")
    assert usage[0]["input_tokens"] == ANTHROPIC_USAGE["input_tokens"]


async def _admin(server: Server, path: str) -> Any:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.operator_token()}"}) as http:
        async with http.get(server.url + path) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
            _keep(json.dumps(body))
            return next(iter(body.values()))


async def test_metrics_count_requests_tokens_and_refusals(llm_server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{llm_server.url}/v1/llm/openai/chat/completions", json={"model": "gpt-4o-mini"}) as r:
            _keep(await r.text(), dict(r.headers))
            assert r.status == 401
        async with http.get(f"{llm_server.url}/metrics") as r:
            text = await r.text()
    _keep(text)
    assert 'roomsvc_llm_requests_total{outcome="ok",provider="openai"}' in text
    assert 'roomsvc_llm_requests_total{outcome="cancelled",provider="anthropic"} 1.0' in text
    assert 'roomsvc_llm_tokens_total{direction="input",provider="anthropic"}' in text
    assert 'roomsvc_llm_refusals_total{error="unauthenticated",provider="openai"}' in text


async def test_refusals_and_upstream_errors_do_not_carry_the_key(llm_server: Server) -> None:
    token = llm_token(llm_server, "canary", {})
    async with aiohttp.ClientSession() as http:
        for model in ("bad-model", "not-allowed", "gpt-4o-mini"):
            for stream in (False, True):
                async with http.post(f"{llm_server.url}/v1/llm/openai/chat/completions",
                                     json={"model": model, "stream": stream, "messages": HI},
                                     headers={"Authorization": f"Bearer {token}"}) as r:
                    text = await r.text()
                    _keep(r.status, text, dict(r.headers))
                    # checked here too, not only by the sweep below: no copy of the key in the answer
                    assert OPENAI_KEY not in text and OPENAI_KEY[-16:] not in text
                    assert all(OPENAI_KEY not in v for v in r.headers.values())
                    if r.status >= 400:  # refused or passed through: the provider's error shape
                        assert "error" in text, (model, stream, r.status, text[:200])


async def test_the_provider_keys_appear_nowhere(llm_server: Server) -> None:
    """Last: everything the tests above received, the audit log, usage, metrics, the CLI's
    output and the server's log, searched for the provider keys."""
    audit = await _admin(llm_server, "/v1/admin/audit?limit=100000")
    secrets_list = await _admin(llm_server, "/v1/admin/secrets")
    assert SEEN, "the tests above ran first and kept what they saw"
    haystacks = [*SEEN, json.dumps(audit), json.dumps(secrets_list), llm_server.stderr(), "\n".join(llm_server.banner)]
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        for hay in haystacks:
            assert key not in hay and key[-16:] not in hay

