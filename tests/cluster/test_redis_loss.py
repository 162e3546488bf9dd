"""A node that loses Redis admits nobody (and says why) rather than splitting the room,
and comes back when Redis does (issue 15). The node runs on a redis-server of this test's
own, stopped under it; the PostgreSQL database is one of its own too."""

from __future__ import annotations

import json
from typing import Iterator

import aiohttp
import pytest
import redis

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


# -- a leave missed while one node was cut off ---------------------------------------------------

#: node B reaches Redis as this ACL user, which the test switches off and on: B alone loses
#: its link (subscription and heartbeats) while A keeps publishing
B_USER, B_PASSWORD = "node-b-user", "node-b-test-password"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, PrivateRedis]]:
    need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN} (set ROOMSVC_TEST_POSTGRES)")
    need(PrivateRedis.available(), "redis-server is not installed (Debian package redis-server)")
    private = PrivateRedis().start()
    admin = redis.Redis.from_url(private.url)
    admin.acl_setuser(B_USER, enabled=True, passwords=[f"+{B_PASSWORD}"], keys=["*"], channels=["*"], commands=["+@all"])
    nodes: list[Server] = []
    base = tmp_path_factory.mktemp("redis-pair")
    prefix = new_prefix()
    try:
        with postgres.database("roomsvc_test_redis_pair") as dsn:
            pg = postgres.postgres_env(dsn)
            b_url = private.url.replace("redis://", f"redis://{B_USER}@")
            nodes.append(start_node(base, "a", {**pg, **cluster_env(prefix, "pair-a", private.url)}, None))
            nodes.append(start_node(base, "b", {**pg, **cluster_env(prefix, "pair-b", b_url),
                                                "ROOMSVC_CLUSTER_REDIS_PASSWORD": B_PASSWORD}, nodes[0]))
            try:
                yield nodes[0], nodes[1], private
            finally:
                stop_all(nodes)
    finally:
        admin.close()
        private.stop()


def _cut_b(private: PrivateRedis, cut: bool) -> None:
    admin = redis.Redis.from_url(private.url)
    try:
        admin.acl_setuser(B_USER, enabled=not cut, passwords=[f"+{B_PASSWORD}"], keys=["*"], channels=["*"],
                          commands=["+@all"])
        if cut:
            admin.execute_command("CLIENT", "KILL", "USER", B_USER)
    finally:
        admin.close()


async def test_a_leave_missed_while_cut_off_is_reconciled_when_the_link_is_back(
        pair: tuple[Server, Server, PrivateRedis]) -> None:
    a, b, private = pair
    room = "pair-room"
    stays = await NativeClient.connect(a.ws_url(room), a.token("stays", room))
    leaves = await NativeClient.connect(a.ws_url(room), a.token("leaves", room))
    watcher = await NativeClient.connect(b.ws_url(room), b.token("watcher", room))
    try:
        await until(lambda: _lists(watcher, {stays.participant_id, leaves.participant_id}), "B lists A's two",
                    within=WAIT)
        _cut_b(private, True)
        await until(lambda: ready(b)[0] == 503, "B answers 503 once its Redis link is cut", within=WAIT)
        assert ready(a)[0] == 200  # A keeps its link: it publishes the leave, which B cannot receive
        await leaves.close()
        _cut_b(private, False)
        await until(lambda: ready(b)[0] == 200, "B answers 200 once its link is back", within=WAIT)
        # B re-read A's presence: the participant who left during the cut is gone from its list,
        # the one who stayed is still there
        await until(lambda: _lists_not(watcher, leaves.participant_id), "B drops the leave it missed", within=WAIT)
        assert stays.participant_id in await _listed(watcher)
        # and A sees B's participant again (B announced everyone afresh)
        await until(lambda: _lists(stays, {watcher.participant_id}), "A lists B's participant again", within=WAIT)
    finally:
        await stays.close()
        await watcher.close()


async def _listed(client: NativeClient) -> set[str]:
    reply = await client.request("participants.list")
    return {p["id"] for p in reply["participants"]}


async def _lists(client: NativeClient, ids: set[str]) -> bool:
    return ids <= await _listed(client)


async def _lists_not(client: NativeClient, pid: str) -> bool:
    return pid not in await _listed(client)
