"""A stand-in for the OpenAI and Anthropic APIs (the real ones are not reachable from
tests): an aiohttp server on 127.0.0.1 that checks the provider key it receives and answers
in each provider's real shapes, usage included, streamed as server-sent events when asked.

It records every request it sees (``seen``), so a test can prove a refused call never
reached it. A stream stops after its first content chunk until the test opens ``gate``
(``hold_streams``), which proves the proxy passes chunks on before the upstream finishes.
A stream whose reader goes away is recorded in ``cancelled``.

Models with special behaviour: ``bad-model`` answers 400 in the provider's error shape;
``leaky-model`` answers 400 with the key it received in the message. A wrong key is refused
with 401 quoting the key it got (real providers quote part of it).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

OPENAI_USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
RESPONSES_USAGE = {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}
ANTHROPIC_USAGE = {"input_tokens": 12, "output_tokens": 6}
TEXT = "Hello from the stand-in"
PIECES = ["Hello", " from", " the", " stand-in"]
#: longest a held stream waits for the test (a failure bound, not a timing)
HOLD_LIMIT = 20.0


@dataclass
class Seen:
    provider: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StandIn:
    openai_key: str
    anthropic_key: str
    seen: list[Seen] = field(default_factory=list)
    hold_streams: bool = False
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    #: set while a held stream waits at the gate
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    finished: int = 0
    cancelled: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> "StandIn":
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models", self.openai_models)
        app.router.add_post("/v1/messages", self.messages)
        # cancelled when the proxy drops the connection: that is what the disconnect test looks for
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, provider: str | None = None) -> list[Seen]:
        return [s for s in self.seen if provider is None or s.provider == provider]

    # -- OpenAI -------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        body = await request.json() if request.can_read_body else None
        self.seen.append(Seen("openai", request.method, request.path, dict(request.headers), body))
        got = request.headers.get("Authorization", "")
        if got != f"Bearer {self.openai_key}":
            return None, _openai_error(401, f"Incorrect API key provided: {got[7:]}.", "invalid_request_error",
                                       "invalid_api_key")
        if body is not None and body.get("model") == "bad-model":
            return None, _openai_error(400, "The model `bad-model` does not exist.", "invalid_request_error", "model_not_found")
        if body is not None and body.get("model") == "leaky-model":
            return None, _openai_error(400, f"model not available for key {got[7:]}", "invalid_request_error", "leak")
        return body, None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._openai(request)
        if refused is not None:
            return refused
        assert body is not None
        base = {"id": "chatcmpl-standin", "created": int(time.time()), "model": body["model"], "system_fingerprint": None}
        if not body.get("stream"):
            return web.json_response({
                **base, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": OPENAI_USAGE,
            })
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "logprobs": None,
                                         "finish_reason": None}]} for piece in PIECES]
        events.append({**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": OPENAI_USAGE})
        return await self._sse(request, [(None, e) for e in events], done=True)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._openai(request)
        if refused is not None:
            return refused
        assert body is not None
        response = {
            "id": "resp_standin", "object": "response", "created_at": int(time.time()), "model": body["model"],
            "status": "completed", "output": [{"type": "message", "id": "msg_standin", "role": "assistant", "status": "completed",
                                               "content": [{"type": "output_text", "text": TEXT, "annotations": []}]}],
            "usage": RESPONSES_USAGE, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        }
        if not body.get("stream"):
            return web.json_response(response)
        started = {**response, "status": "in_progress", "output": [], "usage": None}
        events: list[tuple[str | None, dict[str, Any]]] = [
            ("response.created", {"type": "response.created", "sequence_number": 0, "response": started})]
        events += [("response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": n + 1, "item_id": "msg_standin", "output_index": 0,
            "content_index": 0, "delta": piece, "logprobs": []}) for n, piece in enumerate(PIECES)]
        events.append(("response.completed", {"type": "response.completed", "sequence_number": len(PIECES) + 1,
                                              "response": response}))
        return await self._sse(request, events, done=False)

    async def openai_models(self, request: web.Request) -> web.StreamResponse:
        _, refused = await self._openai(request)
        if refused is not None:
            return refused
        return web.json_response({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0,
                                                             "owned_by": "stand-in"}]})

    # -- Anthropic ----------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(Seen("anthropic", request.method, request.path, dict(request.headers), body))
        got = request.headers.get("x-api-key", "")
        if got != self.anthropic_key:
            return _anthropic_error(401, "authentication_error", f"invalid x-api-key {got}")
        if "anthropic-version" not in request.headers:
            return _anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
        if body.get("model") == "bad-model":
            return _anthropic_error(404, "not_found_error", "model: bad-model")
        if body.get("model") == "leaky-model":
            return _anthropic_error(400, "invalid_request_error", f"model not available for key {got}")
        message = {"id": "msg_standin", "type": "message", "role": "assistant", "model": body["model"],
                   "stop_reason": None, "stop_sequence": None}
        if not body.get("stream"):
            return web.json_response({**message, "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn",
                                      "usage": ANTHROPIC_USAGE})
        events: list[tuple[str | None, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": {
                **message, "content": [], "usage": {"input_tokens": ANTHROPIC_USAGE["input_tokens"], "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": piece}}) for piece in PIECES]
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return await self._sse(request, events, done=False)

    # -- streaming ------------------------------------------------------------------------

    async def _sse(self, request: web.Request, events: list[tuple[str | None, dict[str, Any]]], *, done: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "x-request-id": "req_standin"})
        await response.prepare(request)
        held = False
        try:
            for name, event in events:
                text = (f"event: {name}\n" if name else "") + f"data: {json.dumps(event)}\n\n"
                await response.write(text.encode())
                choices = event.get("choices") or [{}]
                first_content = "content" in choices[0].get("delta", {}) or event.get("type") in (
                    "content_block_delta", "response.output_text.delta")
                if self.hold_streams and not held and first_content:
                    held = True
                    self.holding.set()
                    await asyncio.wait_for(self.gate.wait(), HOLD_LIMIT)
            if done:
                await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.cancelled += 1
            raise
        self.finished += 1
        return response


def _openai_error(status: int, message: str, type_: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": None, "code": code}}, status=status)


def _anthropic_error(status: int, type_: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": type_, "message": message}}, status=status)
