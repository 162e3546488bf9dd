"""Traces: an OAuth flow against the real provider, on the in-process server with the
OpenTelemetry SDK's in-memory exporter; the span tree, its attributes, and canaries.

The canaries are what a trace must never carry: a secret's value, the start ticket, the
state, the authorization code, the access and refresh tokens. Every span's name,
attributes, events and status are searched for each of them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import AsyncIterator, Iterable

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from roomsvc.config import load_settings
from roomsvc.logs import _Json, use_trace_ids
from roomsvc.transport.tracing import Tracing
from tests.oauth.conftest import ACCESS_TOKEN_TTL, CLIENT_SECRET, REFRESH_MARGIN, OAuthEnv
from tests.oauth.flows import ask, consent, error_of, finish, open_link, query, read_credential
from tests.support.inprocess import InProcessServer

CANARY = "canary-trace-5d7e1a"


@pytest.fixture
async def traced(oauth_env: OAuthEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 ) -> AsyncIterator[tuple[InProcessServer, InMemorySpanExporter]]:
    """The app in process with tracing on, every span kept in memory."""
    monkeypatch.setenv("OIDC_TEST_CLIENT_SECRET", CLIENT_SECRET)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    env = {k: v for k, v in oauth_env.env.items() if k.startswith("ROOMSVC_")}
    server = await InProcessServer(
        tmp_path / "data", env=env, port=oauth_env.fake_time_port, tracing=Tracing(provider)
    ).start()
    try:
        yield server, exporter
    finally:
        await server.stop()


def _one(spans: Iterable[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent(spans: list[ReadableSpan], span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    matches = [s for s in spans if s.context.span_id == span.parent.span_id]
    assert len(matches) == 1, f"the parent of {span.name} was not exported"
    return matches[0]


def _texts(span: ReadableSpan) -> list[str]:
    """Everything a span carries, as text."""
    out = [span.name, span.status.description or ""]
    out += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        out.append(event.name)
        out += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    return out


async def test_an_oauth_flow_makes_the_expected_span_tree_and_no_span_carries_a_secret(
    oauth_env: OAuthEnv, traced: tuple[InProcessServer, InMemorySpanExporter]
) -> None:
    server, exporter = traced
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with oauth_env.agent_and_person("tess", server=server) as (agent_id, person_id, agent, person):
            await person.request("secrets.set", {"id": "traced", "text": CANARY})
            await person.request("secrets.get", {"id": "traced"})
            await person.request("headers.resolve", {"header_secrets": ["X-Key:{traced}"]})
            assert await error_of(agent.request("secrets.get", {"id": "traced", "for_identity": person_id})) == "permission_denied"
            task, push = await ask(agent, person)
            callback = await consent(browser, await open_link(browser, push["start_url"]), person_id)
            status, _ = await finish(browser, callback)
            assert status == 200
            granted = await task
            server.clock.advance(ACCESS_TOKEN_TTL - REFRESH_MARGIN + 0.3)
            refreshed = await agent.request(
                "secrets.get_offline_oauth_token", {"connector": "oidc", "delegated_by": person_id}, timeout=30
            )
            stored = read_credential(server, "room1", person_id)
    spans = list(exporter.get_finished_spans())

    # the browser's callback: HTTP span > oauth.callback > oauth.code_exchange > storage writes
    http = _one(spans, "GET /oauth/callback")
    assert http.kind is SpanKind.SERVER
    assert http.attributes is not None
    assert http.attributes["http.route"] == "/oauth/callback" and http.attributes["http.response.status_code"] == 200
    callback_span = _one(spans, "oauth.callback")
    assert _parent(spans, callback_span) is http
    assert dict(callback_span.attributes or {}) == {
        "roomsvc.operation": "oauth_callback", "roomsvc.room": "room1", "roomsvc.connector": "oidc",
    }
    exchange = _one(spans, "oauth.code_exchange")
    assert _parent(spans, exchange) is callback_span
    assert dict(exchange.attributes or {}) == {
        "roomsvc.operation": "code_exchange", "roomsvc.room": "room1", "roomsvc.connector": "oidc",
    }
    writes = [s for s in spans if s.name == "storage.transaction" and s.parent and s.parent.span_id == exchange.context.span_id]
    assert writes and all((s.attributes or {}).get("roomsvc.operation") for s in writes), writes
    # the start link: HTTP span > oauth.start
    start = _one(spans, "oauth.start")
    assert _parent(spans, start).name == "POST /oauth/start"
    assert (start.attributes or {})["roomsvc.room"] == "room1"
    # the agent's request over the websocket, and the refresh under the later offline read
    request = _one(spans, "ws secrets.request_oauth_token")
    assert dict(request.attributes or {}) == {
        "roomsvc.operation": "secrets.request_oauth_token", "roomsvc.protocol": "native", "roomsvc.room": "room1",
    }
    refresh = _one(spans, "oauth.refresh")
    assert _parent(spans, refresh).name == "ws secrets.get_offline_oauth_token"
    assert (refresh.attributes or {})["roomsvc.connector"] == "oidc"
    assert _one(spans, "headers.resolve").attributes == {"roomsvc.room": "room1", "roomsvc.operation": "resolve_headers"}
    # a refused request: failed with the error's name, not its message
    refused = [s for s in spans if s.name == "ws secrets.get" and s.status.status_code is StatusCode.ERROR]
    assert len(refused) == 1 and (refused[0].attributes or {})["error.type"] == "permission_denied"
    assert refused[0].status.description == "permission_denied"

    ticket = query(push["start_url"]).get("t") or push["start_url"].rsplit("/", 1)[-1]
    canaries = {
        "secret value": CANARY, "start ticket": ticket, "state": query(callback)["state"],
        "code": query(callback)["code"], "access token": granted["access_token"],
        "refreshed access token": refreshed["access_token"], "refresh token": stored["refresh_token"],
        "client secret": CLIENT_SECRET,
    }
    assert all(len(v) >= 8 for v in canaries.values()), canaries
    for span in spans:
        for text in _texts(span):
            for what, value in canaries.items():
                assert value not in text, f"span {span.name} carries the {what}: {text[:80]}"


def test_json_log_lines_carry_the_trace_the_event_and_the_incident() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    use_trace_ids(tracing.current_ids)
    try:
        with tracing.span("work", {"operation": "x"}):
            record = logging.LogRecord("roomsvc.ws", logging.ERROR, __file__, 1, "request failed (incident %s)", ("ab12",), None)
            record.event, record.incident = "ws.request_failed", "ab12"
            line = json.loads(_Json().format(record))
        outside = json.loads(_Json().format(logging.LogRecord("roomsvc", logging.INFO, __file__, 1, "plain", (), None)))
    finally:
        use_trace_ids(None)
    (span,) = exporter.get_finished_spans()
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["span_id"] == format(span.context.span_id, "016x")
    assert (line["event"], line["incident"], line["message"]) == ("ws.request_failed", "ab12", "request failed (incident ab12)")
    assert "trace_id" not in outside and outside["event"] == "roomsvc"


@pytest.mark.parametrize(
    ("environ", "exporter", "endpoint"),
    [
        ({}, "none", ""),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}, "otlp",
         "http://127.0.0.1:4318/v1/traces"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1",
          "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2/t"}, "otlp", "http://b:2/t"),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, "none", ""),
        ({"OTEL_TRACES_EXPORTER": "otlp", "ROOMSVC_TELEMETRY_TRACES_EXPORTER": "none"}, "none", ""),
    ],
)
def test_traces_are_off_by_default_and_the_standard_variables_turn_them_on(
    environ: dict[str, str], exporter: str, endpoint: str
) -> None:
    settings = load_settings(config_file=Path(__file__).resolve().parents[2] / "config/roomsvc.toml", environ=environ)
    assert (settings.telemetry.traces_exporter, settings.telemetry.otlp_endpoint) == (exporter, endpoint)


def test_an_unknown_exporter_is_a_config_error() -> None:
    from roomsvc.errors import ConfigError

    with pytest.raises(ConfigError, match="telemetry.traces_exporter"):
        load_settings(environ={"OTEL_TRACES_EXPORTER": "zipkin"}, config_file=Path(__file__).resolve().parents[2] / "config/roomsvc.toml")
