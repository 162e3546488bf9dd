"""Attacks on the LLM proxy: a caller without the grant, with an expired, forged or missing
token, for another provider or model than its grant allows, over its budget or its rate,
with an endpoint roomsvc does not forward or a body too large, is refused in the provider's
own error shape before anything reaches the upstream (which records every request)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from yarl import URL

from tests.llm.conftest import IDENTITY_BUDGET, MAX_BODY, REQUEST_BURST, llm_token
from tests.llm.test_clients import anthropic_client, openai_client
from tests.support.llm_upstream import OPENAI_USAGE, StandIn
from tests.support.server import Server

HI = [{"role": "user", "content": "hi"}]


async def _chat(server: Server, token: str, model: str = "gpt-4o-mini") -> Any:
    async with openai_client(server, token) as client:
        return await client.chat.completions.create(model=model, messages=HI)


async def _message(server: Server, token: str, model: str = "claude-3-5-haiku-latest") -> Any:
    async with anthropic_client(server, token) as client:
        return await client.messages.create(model=model, max_tokens=8, messages=HI)


def _tokens(server: Server) -> dict[str, str]:
    now = int(time.time())
    return {
        "no llm grant": llm_token(server, "no-grant", None, extra_api={"secrets": {}}),
        "expired": llm_token(server, "expired", {}, issued_at=now - 3600, ttl=600),
        "forged": llm_token(server, "forged", {})[:-4] + "AAAA",
        "operator (no room)": llm_token(server, "ops", {}, room=None, extra_api={"admin": {}}),
        "llm grant not an object": llm_token(server, "odd-grant", ["openai"]),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize(("case", "error", "status"), [
    ("no llm grant", "PermissionDeniedError", 403),
    ("expired", "AuthenticationError", 401),
    ("forged", "AuthenticationError", 401),
    ("operator (no room)", "PermissionDeniedError", 403),
    ("llm grant not an object", "PermissionDeniedError", 403),
])
async def test_callers_without_a_valid_grant_never_reach_the_upstream(
        llm_server: Server, standin: StandIn, case: str, error: str, status: int) -> None:
    token = _tokens(llm_server)[case]
    before = len(standin.seen)
    with pytest.raises(getattr(openai, error)) as oa:
        await _chat(llm_server, token)
    with pytest.raises(getattr(anthropic, error)) as an:
        await _message(llm_server, token)
    assert len(standin.seen) == before, f"{case}: the upstream saw a refused call"
    assert oa.value.status_code == an.value.status_code == status
    # each refusal in its provider's shape, with roomsvc's reason as the message
    assert set(oa.value.body) >= {"message", "type", "code"}  # type: ignore[arg-type]
    assert an.value.body["type"] == "error" and an.value.body["error"]["message"]  # type: ignore[index]


async def test_no_token_at_all(llm_server: Server, standin: StandIn) -> None:
    before = len(standin.seen)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{llm_server.url}/v1/llm/anthropic/v1/messages", json={"model": "m"}) as r:
            assert r.status == 401
            body = await r.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert "x-api-key" in body["error"]["message"]
    assert len(standin.seen) == before


async def test_grants_narrow_providers_and_models(llm_server: Server, standin: StandIn) -> None:
    only_openai_mini = llm_token(llm_server, "narrow", {"providers": ["openai"], "models": ["gpt-4o-mini"]})
    before = len(standin.seen)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await _chat(llm_server, only_openai_mini, model="gpt-4o")
    assert "does not allow model 'gpt-4o'" in info.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as other:
        await _message(llm_server, only_openai_mini)
    assert "does not list provider 'anthropic'" in other.value.message
    # a grant cannot widen what the server allows (llm.openai_models = gpt-4o*, bad-model)
    wide = llm_token(llm_server, "wide", {"models": ["*"]})
    with pytest.raises(openai.PermissionDeniedError) as server_side:
        await _chat(llm_server, wide, model="o1-preview")
    assert "not allowed on this server" in server_side.value.message
    assert len(standin.seen) == before
    await _chat(llm_server, only_openai_mini)  # what the grant names goes through
    assert len(standin.seen) == before + 1


async def test_over_budget_is_refused_before_the_upstream(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "spender", {})
    calls = -(-IDENTITY_BUDGET // OPENAI_USAGE["total_tokens"])  # enough to reach the budget
    for _ in range(calls):
        await _chat(llm_server, token)
    before = len(standin.seen)
    with pytest.raises(openai.RateLimitError) as info:
        await _chat(llm_server, token)
    assert info.value.code == "insufficient_quota" and "renews at 00:00 UTC" in info.value.message
    assert 0 < int(info.value.response.headers["Retry-After"]) <= 86400
    with pytest.raises(anthropic.RateLimitError):
        await _message(llm_server, token)  # the budget covers every provider
    assert len(standin.seen) == before
    # another identity in the same room is not affected
    await _chat(llm_server, llm_token(llm_server, "thrifty", {}))


async def test_request_rate_limit(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "hasty", {})
    async with openai_client(llm_server, token) as client:
        for _ in range(REQUEST_BURST):
            await client.models.list()
        before = len(standin.seen)
        with pytest.raises(openai.RateLimitError) as info:
            await client.models.list()
    assert info.value.code == "rate_limit_exceeded" and "llm.requests_rate" in info.value.message
    assert int(info.value.response.headers["Retry-After"]) >= 1
    assert len(standin.seen) == before


async def test_unknown_endpoints_and_large_bodies_are_refused(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "prober", {})
    before = len(standin.seen)
    async with openai_client(llm_server, token) as client:
        with pytest.raises(openai.NotFoundError):
            await client.files.list()
        with pytest.raises(openai.APIStatusError) as large:
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * MAX_BODY}])
        with pytest.raises(openai.BadRequestError) as no_model:
            await client.post("/chat/completions", body={"messages": HI}, cast_to=object)
    assert large.value.status_code == 413 and "llm.max_body_size" in large.value.message
    assert "'model'" in no_model.value.message
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/llm/openai/../../v1/admin/audit", "/v1/llm/openai/chat/completions/../../files",
                     "/v1/llm/anthropic/v1/complete"):
            # sent as written (no client-side normalisation of the dots)
            async with http.post(URL(llm_server.url + path, encoded=True), data=b'{"model": "gpt-4o-mini"}',
                                 headers={"Authorization": f"Bearer {token}", "x-api-key": token}) as r:
                assert r.status == 404, path
    assert len(standin.seen) == before


async def test_roomsvc_token_mints_a_narrowed_llm_grant(llm_server: Server, standin: StandIn) -> None:
    minted = llm_server.cli("token", "--data-dir", str(llm_server.data_dir), "--room", "room1", "--identity", "minted",
                            "--llm-provider", "openai", "--llm-model", "gpt-4o*")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.decode().strip()
    answer = await _chat(llm_server, token, model="gpt-4o-mini")
    assert answer.choices[0].message.content
    with pytest.raises(anthropic.PermissionDeniedError):
        await _message(llm_server, token)
    operator = llm_server.cli("token", "--data-dir", str(llm_server.data_dir), "--operator", "--llm-model", "x")
    assert operator.returncode == 2 and b"operator token has none" in operator.stderr
