"""When the upstream fails: unreachable, it is a 502 in the provider's error shape; silent
past ``llm.read_timeout`` in the middle of a stream, the stream is cut (the status is out
already) and the call is recorded as a timeout. Neither leaks the provider key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import anthropic
import openai
import pytest

from tests.llm.conftest import ANTHROPIC_KEY, OPENAI_KEY, llm_token
from tests.llm.test_clients import anthropic_client, openai_client
from tests.support.llm_upstream import StandIn
from tests.support.server import Server
from tests.support.waiting import until


@pytest.fixture(scope="module")
def failing(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "ROOMSVC_LLM_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # the discard port: nothing listens
        "ROOMSVC_LLM_ANTHROPIC_BASE_URL": standin.url,
        "ROOMSVC_LLM_READ_TIMEOUT": "0.5",
        "ROOMSVC_LLM_KEY_CACHE_TTL": "0",  # a changed secret is used at once
    }
    srv = Server(Path(tmp_path_factory.mktemp("llm-fail")) / "data", env=env).start()
    done = srv.cli("secret", "keys", "create", "--id", "llm", "--data",
                   f"OPENAI_API_KEY={OPENAI_KEY} ANTHROPIC_API_KEY={ANTHROPIC_KEY}", token=srv.operator_token())
    assert done.returncode == 0, done.stderr
    yield srv
    srv.stop()


async def _usage(server: Server, identity: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.operator_token()}"}) as http:
        async with http.get(f"{server.url}/v1/admin/audit", params={"identity": identity}) as r:
            return [a for a in (await r.json())["audit"] if a["action"] == "llm"]


async def test_an_unreachable_upstream_is_a_502_in_the_providers_shape(failing: Server) -> None:
    token = llm_token(failing, "unlucky", {})
    async with openai_client(failing, token) as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502 and "could not be reached" in info.value.message
    assert OPENAI_KEY not in json.dumps(info.value.body) and OPENAI_KEY not in str(info.value.response.headers)

    async def audited() -> bool:
        return [a["outcome"] for a in await _usage(failing, "unlucky")] == ["upstream_failed"]

    await until(audited, "the failed call's audit line")


async def test_a_silent_upstream_cuts_the_stream_and_is_recorded_as_a_timeout(failing: Server, standin: StandIn) -> None:
    token = llm_token(failing, "waiting", {})
    standin.hold_streams = True
    standin.gate.clear()
    try:
        async with anthropic_client(failing, token) as client:
            stream = await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=8, stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])
            # the status (200) is out: the client sees the body end before the message does
            with pytest.raises(Exception) as cut:  # noqa: B017 - the client library's transport error
                async for _ in stream:
                    pass
    finally:
        standin.hold_streams = False
        standin.gate.set()
    assert isinstance(cut.value, anthropic.APIError) or type(cut.value).__name__ == "RemoteProtocolError", cut.value

    async def audited() -> bool:
        return [a["outcome"] for a in await _usage(failing, "waiting")] == ["timeout"]

    await until(audited, "the timed-out call's audit line")
    assert OPENAI_KEY not in failing.stderr() and ANTHROPIC_KEY not in failing.stderr()


async def test_a_provider_refusing_the_servers_key_is_a_502_without_the_providers_words(
        failing: Server, standin: StandIn) -> None:
    wrong = "sk-ant-wrong-" + "x" * 24
    changed = failing.cli("secret", "keys", "create", "--id", "llm", "--data",
                          f"OPENAI_API_KEY={OPENAI_KEY} ANTHROPIC_API_KEY={wrong}", token=failing.operator_token())
    assert changed.returncode == 0, changed.stderr
    try:
        async with anthropic_client(failing, llm_token(failing, "unkeyed", {})) as client:
            with pytest.raises(anthropic.APIStatusError) as info:
                await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=8,
                                             messages=[{"role": "user", "content": "hi"}])
        # the stand-in quoted the key it got; the caller hears only that the server's key was refused
        assert standin.requests("anthropic")[-1].headers["x-api-key"] == wrong
        assert info.value.status_code == 502 and "refused this server's provider key" in info.value.message
        assert wrong not in json.dumps(info.value.body) and wrong not in failing.stderr()
    finally:
        restored = failing.cli("secret", "keys", "create", "--id", "llm", "--data",
                               f"OPENAI_API_KEY={OPENAI_KEY} ANTHROPIC_API_KEY={ANTHROPIC_KEY}",
                               token=failing.operator_token())
        assert restored.returncode == 0, restored.stderr
