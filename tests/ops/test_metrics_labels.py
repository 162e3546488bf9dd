"""Label values stay bounded whatever a client sends, and ``telemetry.metrics = false``
leaves only the six basic series. In process (no peers needed): /metrics read over HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from tests.oauth.flows import error_of
from tests.support.inprocess import InProcessServer
from tests.support.native_client import NativeClient


async def _metrics(server: InProcessServer) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/metrics") as r:
        return await r.text()


async def test_labels_name_templates_and_classes_never_what_a_client_chose(tmp_path: Path) -> None:
    server = await InProcessServer(tmp_path / "data").start()
    try:
        async with aiohttp.ClientSession() as s:
            for method in ("PROPFIND", "MKCOL", "LOCK"):  # methods the parser knows, no route has
                async with s.request(method, f"{server.url}/healthz") as r:
                    assert r.status == 405
            async with s.get(f"{server.url}/no/such/path-ident-1") as r:
                assert r.status == 404
            token = server.token("tool-ident-2", "room-ident-3", api=("secrets",))
            async with s.get(f"{server.url}/v1/rooms/room-ident-3/secrets/secret-ident-4",
                             headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 404
        client = await NativeClient.connect(server.ws_url("room-ident-3"), token)
        try:
            await client.request("secrets.set", {"id": "secret-ident-4", "text": "value-ident-5"})
            # the toolkit's own name goes into the audit channel ("ws.headers:tool-ident-2")
            await client.request("headers.resolve", {"header_secrets": ["X:{secret-ident-4}"]})
        finally:
            await client.close()
        text = await _metrics(server)
    finally:
        await server.stop()
    # a method no route has (405) and a path no route has (404): neither names what was sent
    assert 'roomsvc_http_request_duration_seconds_count{method="other",route="unmatched",status_class="4xx"} 3.0' in text
    assert 'roomsvc_http_request_duration_seconds_count{method="GET",route="unmatched",status_class="4xx"} 1.0' in text
    assert 'route="/v1/rooms/{room}/secrets/{secret_id}"' in text
    assert 'roomsvc_secret_operations_total{action="use",channel="ws.headers",outcome="ok"} 1.0' in text
    assert 'roomsvc_header_resolutions_total{outcome="ok"} 1.0' in text
    assert "ident" not in text  # no identity, room, secret id or value in any label


async def test_metrics_off_keeps_only_the_basic_series(tmp_path: Path) -> None:
    server = await InProcessServer(tmp_path / "data", env={"ROOMSVC_TELEMETRY_METRICS": "0"}).start()
    try:
        token = server.token("alice", "room1", api=("secrets",))
        client = await NativeClient.connect(server.ws_url("room1"), token)
        try:
            await client.request("secrets.set", {"id": "s", "text": "v"})
            await client.request("secrets.get", {"id": "s"})
        finally:
            await client.close()
        text = await _metrics(server)
    finally:
        await server.stop()
    assert 'roomsvc_messages_total{kind="secrets.get",protocol="native"} 1.0' in text
    basic = ("roomsvc_connections", "roomsvc_rooms_active", "roomsvc_participants", "roomsvc_messages", "roomsvc_errors",
             "roomsvc_ws_closes")
    detailed = [line.rsplit(" ", 1) for line in text.splitlines()
                if line.startswith("roomsvc_") and not line.startswith(basic) and "_created" not in line]
    assert detailed, "the unlabelled series are still exposed (at zero)"
    # nothing was counted: labelled series have no child, the unlabelled ones stay at zero
    assert all(float(value) == 0 for _, value in detailed), [d for d in detailed if float(d[1]) != 0]


async def test_a_write_the_database_refuses_is_counted_as_a_storage_error(tmp_path: Path) -> None:
    server = await InProcessServer(tmp_path / "data").start()
    try:
        client = await NativeClient.connect(server.ws_url("room1"), server.token("alice", "room1", api=("secrets",)))
        try:
            await client.request("secrets.set", {"id": "s", "text": "v"})
            assert server.runtime is not None
            # white box: the writer connection turns read-only, as a full or read-only disk would
            await server.runtime.store._writer.execute("PRAGMA query_only = 1")
            try:
                refused = await error_of(client.request("secrets.set", {"id": "s", "text": "w"}))
            finally:
                await server.runtime.store._writer.execute("PRAGMA query_only = 0")
        finally:
            await client.close()
        text = await _metrics(server)
    finally:
        await server.stop()
    assert refused == "storage_error"
    assert 'roomsvc_storage_errors_total{operation="write"} 1.0' in text


async def test_docs_operations_describes_every_series_and_only_those(tmp_path: Path) -> None:
    server = await InProcessServer(tmp_path / "data").start()
    try:
        text = await _metrics(server)
    finally:
        await server.stop()
    exported = {name for name in re.findall(r"^# TYPE (roomsvc_\S+) ", text, re.M) if not name.endswith("_created")}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    described = set(re.findall(r"^\| `(roomsvc_[a-z_]+)` \|", doc, re.M))
    assert exported - described == set(), "series missing from docs/operations.md"
    assert described - exported == set(), "docs/operations.md describes series roomsvc does not export"
