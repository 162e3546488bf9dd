"""Traces leave a real roomsvc (subprocess) over OTLP/HTTP when, and only when, the standard
``OTEL_*`` variables say so: a local OTLP receiver (aiohttp, protobuf decoded with
opentelemetry-proto) stands in for a collector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.server import Server
from tests.support.waiting import until


class Receiver:
    def __init__(self) -> None:
        self.spans: list[tuple[str, str, dict[str, str]]] = []  # (service.name, span name, attributes)

    async def traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for rs in export.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
            for scope in rs.scope_spans:
                for span in scope.spans:
                    attrs = {a.key: str(a.value.string_value or a.value.int_value) for a in span.attributes}
                    self.spans.append((service, span.name, attrs))
        return web.Response(body=b"", content_type="application/x-protobuf")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", got.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield got, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_otel_variables_send_spans_to_the_collector(receiver: tuple[Receiver, str], tmp_path: Path) -> None:
    got, endpoint = receiver
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "roomsvc-test",
           # the SDK's batch processor reads this itself: export every 100 ms, not every 5 s
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    server = Server(tmp_path / "data", env=env).start()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{server.url}/v1/rooms/room1/secrets", headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
        await until(lambda: any(name.endswith("/v1/rooms/{room}/secrets") for _, name, _ in got.spans), "the span exported")
    finally:
        server.stop()
    service, name, attrs = next(s for s in got.spans if s[1].endswith("/v1/rooms/{room}/secrets"))
    assert (service, name) == ("roomsvc-test", "GET /v1/rooms/{room}/secrets")
    assert attrs["http.route"] == "/v1/rooms/{room}/secrets" and attrs["http.response.status_code"] == "401"
    assert attrs["roomsvc.room"] == "room1"
    assert not any("nope" in v for _, _, a in got.spans for v in a.values())


async def test_without_otel_variables_nothing_is_sent(receiver: tuple[Receiver, str], tmp_path: Path) -> None:
    got, endpoint = receiver
    # the endpoint alone does not turn traces on: OTEL_TRACES_EXPORTER must name an exporter
    server = Server(tmp_path / "data", env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}).start()
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{server.url}/healthz") as r:
            assert r.status == 200
    finally:
        assert server.stop() == 0  # shutdown flushes any spans: none may arrive
    assert got.spans == []


async def test_json_log_lines_name_their_event_and_never_a_query(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"ROOMSVC_SERVER_LOG_JSON": "1"}).start()
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{server.url}/healthz?token=canary-log-77c1") as r:
            assert r.status == 200
        await until(lambda: '"http.access"' in server.stderr(), "the access line")
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["event"] == "http.access"]
    assert access and "/healthz" in access[0]["message"]
    assert all({"time", "level", "logger", "event", "message"} <= set(line) for line in lines)
    assert "canary-log-77c1" not in server.stderr()
