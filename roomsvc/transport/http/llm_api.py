"""``/v1/llm/openai/...`` and ``/v1/llm/anthropic/...``: the LLM proxy, and the operators'
usage report ``/v1/admin/llm/usage``.

A caller points the provider's official client at ``<roomsvc>/v1/llm/<provider>`` with its
participant token as the API key (OpenAI: ``Authorization: Bearer``; Anthropic:
``x-api-key``). Each call, in order, before the upstream hears of it: the token is
verified; the endpoint must be one roomsvc knows (:data:`~roomsvc.domain.llm.grant.ENDPOINTS`);
the body is read up to ``llm.max_body_size``; the token's ``llm`` grant, the request rate
and the daily budgets are checked (:class:`~roomsvc.domain.llm.service.LlmService`). A
refusal answers in the provider's error shape (:mod:`.llm_errors`).

Then the call is forwarded: the caller's credential and every header not on
:data:`FORWARDED` stay behind, the provider key goes in the provider's header, and the body
is unchanged, except that an OpenAI chat completions stream gets
``stream_options.include_usage = true`` so its usage is reported. The answer streams back
chunk by chunk as it arrives, read in passing for its usage. Upstream errors keep their status
and body, with any copy of the provider key blanked out; an upstream 401 (the server's key
refused) becomes a 502 that says so. A client that goes away cancels the upstream request. Every forwarded call
ends as a usage row and an audit line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, AsyncIterator, Awaitable

from aiohttp import web

from roomsvc import strict_json
from roomsvc.domain.llm.grant import ANTHROPIC, CHAT, OPENAI, endpoint
from roomsvc.domain.llm.ports import Upstream, UpstreamAnswer, UpstreamRequest
from roomsvc.domain.llm.service import Admission, LlmService
from roomsvc.domain.llm.usage import NONE, BodyScanner, SseScanner, Usage
from roomsvc.errors import DependencyMissing, InvalidRequest, NotFound, RoomsvcError, Timeout, TooLarge, Unauthenticated
from roomsvc.ids import SecretStr
from roomsvc.transport.fields import bearer, opt_str
from roomsvc.transport.http.auth import caller
from roomsvc.transport.http.keys import METRICS, SERVICES
from roomsvc.transport.http.llm_errors import refusal

log = logging.getLogger("roomsvc.llm")

LLM = web.AppKey("llm", LlmService)
LLM_UPSTREAM = web.AppKey("llm_upstream", Upstream)
#: usage writes still running (awaited at shutdown, before the store closes)
LLM_SETTLING = web.AppKey("llm_settling", set[asyncio.Task[None]])

#: request headers passed to the provider (lower case); ``x-stainless-`` ones too (the
#: official clients' own: language, retry count, timeout). Everything else stays behind:
#: the caller's credential, cookies, hop-by-hop headers, organization/project selectors.
FORWARDED = frozenset({"content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta", "openai-beta",
                       "idempotency-key"})
_FORWARDED_PREFIXES = ("x-stainless-",)
#: answer headers passed back: content type, request ids, provider rate-limit hints
RETURNED = frozenset({"content-type", "content-encoding", "x-request-id", "request-id", "openai-processing-ms", "openai-version",
                      "retry-after", "retry-after-ms", "anthropic-version"})
_RETURNED_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


class _ClientGone(Exception):
    """The caller disconnected while its answer was streaming."""


async def openai(request: web.Request) -> web.StreamResponse:
    return await _proxy(request, OPENAI)


async def anthropic(request: web.Request) -> web.StreamResponse:
    return await _proxy(request, ANTHROPIC)


async def _proxy(request: web.Request, provider: str) -> web.StreamResponse:
    metrics = request.app[METRICS]
    try:
        admission, upstream_request, key = await _admit(request, provider)
    except RoomsvcError as exc:
        metrics.llm_refusals.labels(provider, exc.name).inc()
        return refusal(provider, exc)
    return await _forward(request, admission, upstream_request, key)


def _credential(request: web.Request, provider: str) -> str:
    token = None
    if provider == ANTHROPIC:
        token = request.headers.get("x-api-key", "").strip() or None
    token = token or bearer(request.headers.get("Authorization", ""))
    if token is None:
        where = "'x-api-key'" if provider == ANTHROPIC else "'Authorization: Bearer'"
        raise Unauthenticated(f"send your roomsvc participant token as the API key ({where})")
    return token


async def _admit(request: web.Request, provider: str) -> tuple[Admission, UpstreamRequest, SecretStr]:
    service = request.app[LLM]
    principal = request.app[SERVICES].authenticate(_credential(request, provider))
    config = service.provider(provider)
    known = endpoint(provider, request.method, request.match_info["tail"])
    if known is None:
        raise NotFound(f"{request.method} /{request.match_info['tail'][:100]} is not an endpoint the roomsvc LLM proxy forwards")
    body = await _read_body(request, service.config.max_body_size)
    payload: dict[str, Any] | None = None
    if body:
        parsed = strict_json.loads(body, what="body")
        if not isinstance(parsed, dict):
            raise InvalidRequest("the body must be a JSON object")
        payload = parsed
    model = payload.get("model") if payload is not None else None
    if known.has_model and not isinstance(model, str):
        raise InvalidRequest("the body must name a 'model'")
    stream = payload is not None and payload.get("stream") is True
    admission = await service.admit(principal, provider, known, model if isinstance(model, str) else None, stream=stream)
    if stream and known.dialect == CHAT and payload is not None:
        body = _with_usage_reporting(payload, body)
    key = await service.provider_key(provider)
    headers = _forwarded_headers(request)
    if provider == OPENAI:
        headers["Authorization"] = f"Bearer {key.reveal()}"
    else:
        headers["x-api-key"] = key.reveal()
    url = config.base_url.rstrip("/") + "/" + known.path
    if request.query_string:
        url += "?" + request.query_string
    return admission, UpstreamRequest(request.method, url, headers, body), key


def _with_usage_reporting(payload: dict[str, Any], body: bytes) -> bytes:
    """The one body change: an OpenAI chat stream reports its usage in a last chunk."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body
    payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return json.dumps(payload, ensure_ascii=False).encode()


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the request body is {request.content_length} bytes; the limit is {limit} (llm.max_body_size)")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the request body is over {limit} bytes (llm.max_body_size)")
    return bytes(body)


def _forwarded_headers(request: web.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in FORWARDED or lower.startswith(_FORWARDED_PREFIXES):
            out[name] = value
    return out


def _returned_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    out = {"Cache-Control": "no-store"}
    for name, value in headers:
        lower = name.lower()
        if lower in RETURNED or lower.startswith(_RETURNED_PREFIXES):
            out[name] = value
    return out


async def _forward(
    request: web.Request, admission: Admission, upstream_request: UpstreamRequest, key: SecretStr
) -> web.StreamResponse:
    service, upstream, metrics = request.app[LLM], request.app[LLM_UPSTREAM], request.app[METRICS]
    provider = admission.provider
    usage: Usage = NONE
    outcome = "cancelled"
    response: web.StreamResponse | None = None
    try:
        async with upstream.send(upstream_request) as answer:
            outcome = "ok" if answer.status < 400 else f"upstream_{answer.status}"
            if answer.status >= 400:
                return await _upstream_error(provider, answer, key, service.config.max_usage_scan)
            response = web.StreamResponse(status=answer.status, headers=_returned_headers(answer.headers))
            content_type = response.headers.get("Content-Type", "")
            scanner = SseScanner() if content_type.startswith("text/event-stream") else BodyScanner(service.config.max_usage_scan)
            await response.prepare(request)
            try:
                async with _watch_client(request, service.config.disconnect_check_interval):
                    async for chunk in answer.chunks():
                        scanner.feed(chunk)
                        await response.write(chunk)
            finally:
                usage = scanner.usage()
            await response.write_eof()
    except RoomsvcError as exc:  # the upstream failed: before the answer, in the provider's shape
        outcome = "timeout" if isinstance(exc, Timeout) else "upstream_failed"
        log.warning("LLM call to %s failed: %s", provider, exc.message)
        if response is None:
            return refusal(provider, exc)
        # the answer had begun: all the caller can be told is that it ended early
        if request.transport is not None:
            request.transport.close()
        return response
    except (_ClientGone, ConnectionError):
        outcome = "cancelled"  # the caller went away: nobody to answer
        return response or web.Response(status=499)
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        metrics.llm_requests.labels(provider, _label(outcome)).inc()
        metrics.llm_tokens.labels(provider, "input").inc(usage.input_tokens)
        metrics.llm_tokens.labels(provider, "output").inc(usage.output_tokens)
        # counted against the budgets now; written while the connection serves its next
        # call (a client's next call need not wait for the fsync), and by a task, so a
        # cancelled handler (shutdown) still records what was used
        settling = request.app[LLM_SETTLING]
        task = asyncio.ensure_future(_settle(service.settle(admission, usage, outcome), admission))
        settling.add(task)
        task.add_done_callback(settling.discard)
    return response


async def _upstream_error(provider: str, answer: UpstreamAnswer, key: SecretStr, limit: int) -> web.StreamResponse:
    """An upstream error, passed on with its status and body, but never with the provider key:
    an error body is small, so it is read whole (up to ``limit``) and any copy of the key in
    it is blanked. A 401 is about the server's key, not the caller's token: the caller gets a
    502 saying so (the provider's message, which may quote part of the key, stays behind)."""
    body = bytearray()
    async for chunk in answer.chunks():
        body += chunk[: max(0, limit - len(body))]
    if answer.status == 401:
        log.error("the %s API refused the configured provider key (401): check its project secret", provider)
        return refusal(provider, DependencyMissing(
            f"the {provider} API refused this server's provider key (upstream status 401); "
            "an operator must check the key in its project secret"))
    secret = key.reveal().encode()
    if secret:
        body = bytearray(bytes(body).replace(secret, b"[provider key]"))
    return web.Response(status=answer.status, body=bytes(body), headers=_returned_headers(answer.headers))


def _label(outcome: str) -> str:
    """upstream_429 -> upstream_4xx: a bounded set of metric labels."""
    status = outcome.removeprefix("upstream_")
    return f"upstream_{status[0]}xx" if status.isdigit() else outcome


async def _settle(write: Awaitable[None], admission: Admission) -> None:
    try:
        await write
    except RoomsvcError as exc:
        log.error("LLM usage of %s could not be recorded: %s", admission.who.identity, exc.message)


async def finish_settling(app: web.Application) -> None:
    """On shutdown: let the usage writes still running reach the store before it closes."""
    pending: set[asyncio.Task[None]] = app[LLM_SETTLING]
    if pending:
        await asyncio.gather(*list(pending), return_exceptions=True)


@contextlib.asynccontextmanager
async def _watch_client(request: web.Request, interval: float) -> AsyncIterator[None]:
    """While the body streams, check every ``interval`` whether the caller went away and,
    if so, cancel the handler: leaving the upstream's context then drops its connection
    (aiohttp does not cancel handlers of lost connections by default; a write would only
    notice at the next chunk, which a silent upstream may never send)."""
    handler = asyncio.current_task()
    assert handler is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while True:
            await asyncio.sleep(interval)
            transport = request.transport
            if transport is None or transport.is_closing():
                gone = True
                handler.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if gone:
            handler.uncancel()
            raise _ClientGone() from None
        raise
    finally:
        watcher.cancel()


# -- the operators' report ----------------------------------------------------------------------


async def usage(request: web.Request) -> web.Response:
    q = request.query
    try:
        since = float(q["since"]) if q.get("since") else None
    except ValueError:
        raise InvalidRequest("'since' is seconds since the epoch") from None
    rows = await request.app[LLM].report(caller(request), room=opt_str(q, "room"), identity=opt_str(q, "identity"),
                                          since=since)
    return web.json_response({"usage": [r.as_dict() for r in rows]})


