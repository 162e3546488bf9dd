"""A room's daily token budget end to end (issue 14): two identities in one room, each under
any budget of its own, spend the room's budget together; the next call from either is
refused in the provider's own error shape (HTTP 429 ``insufficient_quota``, Retry-After)
before the upstream sees it, while a caller in another room goes on. The official
``openai`` and ``anthropic`` clients against a real roomsvc and the stand-in upstream.

A server of this module's own: the shared one's identities all sit in ``room1``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import anthropic
import openai
import pytest

from tests.llm.conftest import ANTHROPIC_KEY, OPENAI_KEY, llm_token
from tests.llm.test_clients import anthropic_client, openai_client
from tests.support.llm_upstream import ANTHROPIC_USAGE, OPENAI_USAGE, StandIn
from tests.support.server import Server

HI = [{"role": "user", "content": "hi"}]
CALL = OPENAI_USAGE["total_tokens"]
#: three calls of alice's and bob's reach it; neither alone does in two
ROOM_BUDGET = 3 * CALL
ROOM = "shared-room"


@pytest.fixture(scope="module")
def budget_server(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "ROOMSVC_LLM_OPENAI_BASE_URL": f"{standin.url}/v1",
        "ROOMSVC_LLM_ANTHROPIC_BASE_URL": standin.url,
        "ROOMSVC_LLM_OPENAI_MODELS": "gpt-4o*",
        "ROOMSVC_LLM_ROOM_DAILY_TOKENS": str(ROOM_BUDGET),
        "ROOMSVC_LLM_IDENTITY_DAILY_TOKENS": str(10 * ROOM_BUDGET),  # on, and far from reached
    }
    srv = Server(Path(tmp_path_factory.mktemp("llm-room")) / "data", env=env).start()
    done = srv.cli("secret", "keys", "create", "--id", "llm", "--data",
                   f"OPENAI_API_KEY={OPENAI_KEY} ANTHROPIC_API_KEY={ANTHROPIC_KEY}", token=srv.operator_token())
    assert done.returncode == 0, done.stderr
    yield srv
    srv.stop()


async def _chat(server: Server, token: str) -> Any:
    async with openai_client(server, token) as client:
        return await client.chat.completions.create(model="gpt-4o-mini", messages=HI)


async def _message(server: Server, token: str) -> Any:
    async with anthropic_client(server, token) as client:
        return await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=8, messages=HI)


async def test_two_identities_spend_the_room_budget_together_then_both_are_refused(
        budget_server: Server, standin: StandIn) -> None:
    alice = llm_token(budget_server, "room-alice", {}, room=ROOM)
    bob = llm_token(budget_server, "room-bob", {}, room=ROOM)
    await _chat(budget_server, alice)
    await _chat(budget_server, bob)
    # 2 calls: under the room's budget, so a third (alice's) still goes through, and reaches it
    await _chat(budget_server, alice)
    before = len(standin.seen)
    for token in (alice, bob):
        with pytest.raises(openai.RateLimitError) as oa:
            await _chat(budget_server, token)
        assert oa.value.status_code == 429 and oa.value.code == "insufficient_quota"
        assert set(oa.value.body) >= {"message", "type", "code"}  # type: ignore[arg-type]
        assert f"the room {ROOM!r} has used {ROOM_BUDGET} of its {ROOM_BUDGET} LLM tokens today" in oa.value.message
        assert "llm.room_daily_tokens" in oa.value.message and "renews at 00:00 UTC" in oa.value.message
        assert 0 < int(oa.value.response.headers["Retry-After"]) <= 86400
        # the budget covers every provider, each refusing in its own shape
        with pytest.raises(anthropic.RateLimitError) as an:
            await _message(budget_server, token)
        assert an.value.body["type"] == "error" and an.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert "llm.room_daily_tokens" in an.value.body["error"]["message"]  # type: ignore[index]
    assert len(standin.seen) == before, "the upstream saw a call over the room's budget"
    # a new identity in the spent room is refused too; alice herself in another room is not
    with pytest.raises(openai.RateLimitError):
        await _chat(budget_server, llm_token(budget_server, "room-carol", {}, room=ROOM))
    assert len(standin.seen) == before
    reply = await _message(budget_server, llm_token(budget_server, "room-alice", {}, room="other-room"))
    assert reply.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]
    assert len(standin.seen) == before + 1
    # what was counted: the room's three calls, split between the two identities
    done = budget_server.cli("llm", "usage", "--room", ROOM, "--json", token=budget_server.operator_token())
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    rows = rows["usage"] if isinstance(rows, dict) else rows
    spent: dict[str, int] = {}
    for row in rows:
        spent[row["identity"]] = spent.get(row["identity"], 0) + row["input_tokens"] + row["output_tokens"]
    assert spent == {"room-alice": 2 * CALL, "room-bob": CALL}, rows
