"""A node that loses Redis admits nobody (and says why) rather than splitting the room,
and comes back when Redis does (issue 15). The node runs on a redis-server of this test's
own, stopped under it; the PostgreSQL database is one of its own too."""

from __future__ import annotations

import json
from typing import Iterator

import aiohttp
import pytest

from tests.cluster.nodes import PrivateRedis, cluster_env, new_prefix, start_node, stop_all
from tests.storage.test_postgres_nodes import ready
from tests.support import postgres
from tests.support.native_client import NativeClient
from tests.support.peers import need
from tests.support.server import Server
from tests.support.waiting import until

WAIT = 20


@pytest.fixture(scope="module")
def lonely(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, PrivateRedis]]:
    need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN} (set ROOMSVC_TEST_POSTGRES)")
    need(PrivateRedis.available(), "redis-server is not installed (Debian package redis-server)")
    private = PrivateRedis().start()
    nodes: list[Server] = []
    try:
        with postgres.database("roomsvc_test_redis_loss") as dsn:
            env = {**postgres.postgres_env(dsn), **cluster_env(new_prefix(), "lonely", private.url)}
            nodes.append(start_node(tmp_path_factory.mktemp("redis-loss"), "n", env, None))
            try:
                yield nodes[0], private
            finally:
                stop_all(nodes)
    finally:
        private.stop()


async def native_refusal(node: Server, room: str) -> tuple[int | None, str]:
    """How the node closes a native client's socket on joining: (close code, reason)."""
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(node.ws_url(room), headers={"Authorization": f"Bearer {node.token('late', room)}"}) as ws:
            first = await ws.receive(timeout=WAIT)
            assert first.type == aiohttp.WSMsgType.CLOSE, first
            return ws.close_code, str(first.extra)


async def meshagent_refusal(node: Server, room: str) -> tuple[int, str]:
    """The MeshAgent endpoint joins before the upgrade: the refusal is an HTTP answer."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.url}/rooms/{room}", headers={
            "Authorization": f"Bearer {node.token('late-mesh', room)}", "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }) as reply:
            return reply.status, await reply.text()


async def test_losing_redis_turns_readyz_503_and_refuses_joins_until_it_is_back(lonely: tuple[Server, PrivateRedis]) -> None:
    node, private = lonely
    assert ready(node) == (200, '{"status": "ready"}')
    present = await NativeClient.connect(node.ws_url("loss-room"), node.token("present", "loss-room"))
    leaving = await NativeClient.connect(node.ws_url("loss-room"), node.token("leaving", "loss-room"))
    try:
        assert (await cluster_series(node))["roomsvc_cluster_redis_connected"] == 1
        private.stop()
        await until(lambda: ready(node)[0] == 503, "readyz answers 503 once Redis is gone", within=WAIT)
        # the metrics say so too, and count the leave the other nodes could not be told of
        assert (await cluster_series(node))["roomsvc_cluster_redis_connected"] == 0
        await leaving.close()
        await until(lambda: _unannounced(node, 1), "the leave made while Redis is gone is counted as not carried",
                    within=WAIT)
        assert json.loads(ready(node)[1]) == {"status": "redis unavailable"}
        code, reason = await native_refusal(node, "loss-room")
        assert "redis unavailable" in reason, (code, reason)
        status, body = await meshagent_refusal(node, "loss-room")
        assert status == 503 and "redis unavailable" in body, (status, body)
        print(f"\nrefused while Redis is gone: native close {code} {reason!r}; MeshAgent HTTP {status} {body}")
        # who was connected stays connected (only new joins are refused)
        assert await present.request("ping") is not None
        # Redis is back (same port, empty: no persistence): the node beats, re-announces, admits again
        private.start()
        await until(lambda: ready(node)[0] == 200, "readyz answers 200 once Redis is back", within=WAIT)
        assert (await cluster_series(node))["roomsvc_cluster_redis_connected"] == 1
        again = await NativeClient.connect(node.ws_url("loss-room"), node.token("again", "loss-room"))
        await again.close()
    finally:
        await present.close()


async def cluster_series(node: Server) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as reply:
        text = await reply.text()
    return {name: float(value) for name, value in (
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("roomsvc_cluster_")
    )}


async def _unannounced(node: Server, count: int) -> bool:
    return (await cluster_series(node)).get('roomsvc_cluster_publish_failures_total{reason="unavailable"}') == count
