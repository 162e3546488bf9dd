"""The official ``openai`` and ``anthropic`` clients, pointed at a real roomsvc with a
participant token as their API key, call a stand-in upstream through the LLM proxy: answers
arrive intact, streamed chunks arrive while the upstream is still answering, the upstream
sees the provider key and never the caller's token."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.llm.conftest import ANTHROPIC_KEY, OPENAI_KEY, llm_token
from tests.support.llm_upstream import ANTHROPIC_USAGE, OPENAI_USAGE, PIECES, RESPONSES_USAGE, TEXT, StandIn
from tests.support.server import Server
from tests.support.waiting import until


def openai_client(server: Server, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1/llm/openai", api_key=token, max_retries=0,
                              http_client=openai.DefaultAsyncHttpxClient(trust_env=False))


def anthropic_client(server: Server, token: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=f"{server.url}/v1/llm/anthropic", api_key=token, max_retries=0,
                                    http_client=anthropic.DefaultAsyncHttpxClient(trust_env=False))


async def _admin(server: Server, path: str) -> Any:
    """GET an operator endpoint; the answer's one field."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.operator_token()}"}) as http:
        async with http.get(server.url + path) as r:
            assert r.status == 200, await r.text()
            return next(iter((await r.json()).values()))


def _only_provider_key(standin: StandIn, token: str, provider: str) -> None:
    """The last request the stand-in saw carried the provider key in the provider's header,
    and the caller's token nowhere."""
    seen = standin.requests(provider)[-1]
    headers = {k.lower(): v for k, v in seen.headers.items()}
    if provider == "openai":
        assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert "x-api-key" not in headers
    else:
        assert headers["x-api-key"] == ANTHROPIC_KEY and "authorization" not in headers
        assert headers["anthropic-version"]  # kept: the API needs it
    assert all(token not in v for v in seen.headers.values())
    assert token not in json.dumps(seen.body)


async def test_openai_chat_completion(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "oa-plain", {})
    async with openai_client(llm_server, token) as client:
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == TEXT
    assert answer.usage is not None and answer.usage.total_tokens == OPENAI_USAGE["total_tokens"]
    _only_provider_key(standin, token, "openai")
    # the body went through unchanged (not a stream: nothing to switch on)
    assert standin.requests("openai")[-1].body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_openai_chat_stream_arrives_chunk_by_chunk_with_usage(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "oa-stream", {})
    standin.hold_streams, finished = True, standin.finished
    standin.gate.clear()
    standin.holding.clear()
    try:
        async with openai_client(llm_server, token) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
            pieces, usage = [], None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    if not pieces:
                        # the stand-in is held after its first chunk: this one came through the
                        # proxy while the upstream was still answering
                        assert standin.holding.is_set() and standin.finished == finished
                        standin.gate.set()
                    pieces.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    usage = chunk.usage
    finally:
        standin.hold_streams = False
        standin.gate.set()
    # the stand-in finished normally: it was released by the test, not by its hold limit
    # (a proxy that buffered would have held the first chunk until then, and the stand-in
    # would have given up)
    assert standin.finished == finished + 1
    assert "".join(pieces) == TEXT and pieces == PIECES
    # the client did not ask for usage; the proxy switched it on (the one body change)
    assert usage is not None and usage.total_tokens == OPENAI_USAGE["total_tokens"]
    body = standin.requests("openai")[-1].body
    assert body["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in body.items() if k != "stream_options"} == {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    _only_provider_key(standin, token, "openai")


async def test_openai_responses_and_model_list(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "oa-responses", {})
    async with openai_client(llm_server, token) as client:
        answer = await client.responses.create(model="gpt-4o-mini", input="hi")
        models = await client.models.list()
    assert answer.output_text == TEXT and answer.usage is not None
    assert answer.usage.total_tokens == RESPONSES_USAGE["total_tokens"]
    assert [m.id for m in models.data] == ["gpt-4o-mini"]


async def test_openai_responses_stream_is_accounted(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "oa-responses-stream", {})
    async with openai_client(llm_server, token) as client:
        stream = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        deltas, completed = [], None
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                completed = event.response
    assert deltas == PIECES and completed is not None and completed.usage is not None
    assert completed.usage.total_tokens == RESPONSES_USAGE["total_tokens"]
    # a responses stream reports usage by itself: its body is forwarded unchanged
    assert standin.requests("openai")[-1].body == {"model": "gpt-4o-mini", "input": "hi", "stream": True}

    async def accounted() -> bool:  # read from the response.completed event as it passed
        rows = await _admin(llm_server, "/v1/admin/llm/usage?identity=oa-responses-stream")
        return [(r["input_tokens"], r["output_tokens"]) for r in rows] == [(9, 4)]

    await until(accounted, "the responses stream's usage row")


async def test_anthropic_message(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "an-plain", {"providers": ["anthropic"]})
    async with anthropic_client(llm_server, token) as client:
        message = await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64,
                                               messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]
    assert message.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    _only_provider_key(standin, token, "anthropic")


async def test_anthropic_stream_arrives_chunk_by_chunk(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "an-stream", {})
    standin.hold_streams, finished = True, standin.finished
    standin.gate.clear()
    standin.holding.clear()
    try:
        async with anthropic_client(llm_server, token) as client:
            stream = await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])
            pieces, types = [], []
            async for event in stream:
                types.append(event.type)
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if not pieces:
                        assert standin.holding.is_set() and standin.finished == finished
                        standin.gate.set()
                    pieces.append(event.delta.text)
    finally:
        standin.hold_streams = False
        standin.gate.set()
    assert standin.finished == finished + 1
    assert pieces == PIECES
    assert types[0] == "message_start" and types[-1] == "message_stop" and "message_delta" in types
    # the Anthropic body is forwarded unchanged, stream or not
    assert standin.requests("anthropic")[-1].body == {
        "model": "claude-3-5-haiku-latest", "max_tokens": 64, "stream": True,
        "messages": [{"role": "user", "content": "hi"}]}
    _only_provider_key(standin, token, "anthropic")


async def test_upstream_errors_pass_through_with_their_status(llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "oa-bad-model", {})
    async with openai_client(llm_server, token) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="bad-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 400 and info.value.code == "model_not_found"
    assert "bad-model` does not exist" in info.value.message
    async with anthropic_client(llm_server, token) as client:
        with pytest.raises(anthropic.NotFoundError) as found:
            await client.messages.create(model="bad-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert found.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]



async def test_an_upstream_error_quoting_the_provider_key_reaches_the_caller_without_it(
        llm_server: Server, standin: StandIn) -> None:
    token = llm_token(llm_server, "oa-leaky", {})
    async with openai_client(llm_server, token) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="leaky-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["message"] == "model not available for key [provider key]"  # type: ignore[index]
    async with anthropic_client(llm_server, token) as client:
        with pytest.raises(anthropic.BadRequestError) as other:
            await client.messages.create(model="leaky-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert other.value.body["error"]["message"] == "model not available for key [provider key]"  # type: ignore[index]
