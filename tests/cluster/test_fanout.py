"""Rooms across nodes (issue 15): two real roomsvc processes on one PostgreSQL database,
joined over the real Redis. Participants on either node see everyone, messages cross in
order per sender (native and MeshAgent clients mixed), a revocation on A closes B's
sockets, a secret written on A is read on B, a killed node's participants leave, and a secret request made on A is answered on B."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio

from roomsvc.transport.meshagent.packing import EmptyContent, JsonContent, unpack
from tests.cluster.conftest import Cluster
from tests.cluster.nodes import BOUND, REDIS_URL, cluster_env, start_node
from tests.meshagent.raw_client import RawClient
from tests.storage.test_postgres_nodes import ready
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import Server
from tests.support.waiting import until

MESSAGES = 40
#: an upper bound for waiting on what should come (a failure, not a timing check)
WAIT = 20


async def listed(node_client: NativeClient) -> set[str]:
    reply = await node_client.request("participants.list")
    return {p["id"] for p in reply["participants"]}


async def native(node: Server, room: str, identity: str, *api: str) -> NativeClient:
    return await NativeClient.connect(node.ws_url(room), node.token(identity, room, api=api))


async def test_broadcasts_cross_nodes_in_order_per_sender_native_and_meshagent_mixed(cluster: Cluster) -> None:
    room = "fan-room"
    na = await native(cluster.a, room, "native-a")
    ma = await RawClient.connect(cluster.a.url, room, cluster.a.token("mesh-a", room))
    nb = await native(cluster.b, room, "native-b")
    mb = await RawClient.connect(cluster.b.url, room, cluster.b.token("mesh-b", room))
    everyone = {na.participant_id, ma.participant_id, nb.participant_id, mb.participant_id}
    try:
        # either node's list shows everyone, wherever they are connected
        await until(lambda: _lists_all(na, everyone), "A lists every participant", within=WAIT)
        await until(lambda: _lists_all(nb, everyone), "B lists every participant", within=WAIT)
        for i in range(MESSAGES):
            await na.request("message.broadcast", {"message_type": "tick", "body": {"seq": i}})
            assert await ma.invoke("messaging", "broadcast", JsonContent({"type": "tock", "message": {"seq": i}})) == EmptyContent()
        # the native client on B: every message of each sender, in order
        got = await _native_messages(nb, 2 * MESSAGES)
        assert got[na.participant_id] == list(range(MESSAGES))
        assert got[ma.participant_id] == list(range(MESSAGES))
        # the MeshAgent client on B too
        seen: dict[str, list[int]] = {}
        while sum(len(v) for v in seen.values()) < 2 * MESSAGES:
            header, _ = unpack((await mb.push("messaging.send", timeout=WAIT)).payload)
            if header["type"] in {"tick", "tock"}:
                seen.setdefault(header["from_participant_id"], []).append(header["message"]["seq"])
        assert seen == {na.participant_id: list(range(MESSAGES)), ma.participant_id: list(range(MESSAGES))}
        # and back: B's native broadcast and a message to one participant on A
        await nb.request("message.broadcast", {"message_type": "back", "body": {"n": 1}, "attachment": "AAEC"})
        frame = await _next_message(na, "back")
        assert (frame["data"]["from"]["id"], frame["data"]["body"], frame["data"]["attachment"]) == (
            nb.participant_id, {"n": 1}, "AAEC",
        )
        await nb.request("message.send", {"to": na.participant_id, "message_type": "direct", "body": "hi"})
        frame = await _next_message(na, "direct")
        assert (frame["data"]["message_type"], frame["data"]["broadcast"]) == ("direct", False)
        # a call to a participant on another node: asked there, answered back
        calling = asyncio.get_running_loop().create_task(
            nb.request("call", {"to": na.participant_id, "method": "add", "body": [2, 3], "timeout": 20})
        )
        asked = (await na.next_event("call", timeout=WAIT))["data"]
        assert (asked["method"], asked["body"], asked["from"]["id"]) == ("add", [2, 3], nb.participant_id)
        await na.request("call.reply", {"call_id": asked["call_id"], "body": 5})
        assert (await asyncio.wait_for(calling, WAIT))["body"] == 5
        # an error answer crosses too; a MeshAgent callee on another node fails the call at once
        calling = asyncio.get_running_loop().create_task(
            nb.request("call", {"to": na.participant_id, "method": "add", "body": [], "timeout": 20})
        )
        asked = (await na.next_event("call", timeout=WAIT))["data"]
        await na.request("call.reply", {"call_id": asked["call_id"], "error": "no numbers"})
        with pytest.raises(ResponseError) as refused:
            await asyncio.wait_for(calling, WAIT)
        assert "no numbers" in str(refused.value)
        with pytest.raises(ResponseError) as refused:  # answered by A's MeshAgent session, long before the call's timeout
            await asyncio.wait_for(
                nb.request("call", {"to": ma.participant_id, "method": "m", "body": {}, "timeout": 30}, timeout=40), WAIT
            )
        assert "MeshAgent clients do not answer calls" in str(refused.value)
        # a leave on B reaches A's participants and list
        await mb.close()
        assert (await _presence(na, "left"))["id"] == mb.participant_id
        assert mb.participant_id not in await listed(na)
    finally:
        for client in (na, nb):
            await client.close()
        await ma.close()
        await mb.close()


async def test_a_join_on_b_is_announced_on_a_with_its_attributes(cluster: Cluster) -> None:
    room = "join-room"
    na = await native(cluster.a, room, "watcher")
    try:
        nb = await native(cluster.b, room, "newcomer")
        try:
            joined = await _presence(na, "joined")
            assert (joined["id"], joined["identity"]) == (nb.participant_id, "newcomer")
            await nb.request("participant.set_attributes", {"attributes": {"mood": "calm"}})
            updated = await _presence(na, "updated")
            assert updated["attributes"]["mood"] == "calm"
        finally:
            await nb.close()
    finally:
        await na.close()


async def test_a_token_revoked_on_a_closes_its_sockets_on_b(cluster: Cluster) -> None:
    token = cluster.b.token("revoked-elsewhere", "rev-room", api=("secrets",))
    other = await native(cluster.b, "rev-room", "bystander")
    victim = await NativeClient.connect(cluster.b.ws_url("rev-room"), token)
    mesh = await RawClient.connect(cluster.b.url, "rev-room", cluster.b.token("revoked-elsewhere", "rev-room"))
    try:
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{cluster.a.url}/v1/admin/tokens/revoke", json={"identity": "revoked-elsewhere"},
                headers={"Authorization": f"Bearer {cluster.a.operator_token()}"},
            ) as reply:
                assert reply.status == 200, await reply.text()
        await asyncio.wait_for(victim.closed.wait(), WAIT)
        assert victim.ws.close_code == 4001
        assert await mesh.wait_closed(timeout=WAIT) == 4001
        print(f"\nrevoked on A, closed on B after {time.monotonic() - started:.3f} s")
        # the bystander's socket stays open
        assert (await other.request("ping")) is not None
        # and B refuses the revoked token for new connections too
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{cluster.b.url}/v1/rooms/rev-room/ws", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 401
    finally:
        await victim.close()
        await mesh.close()
        await other.close()


async def test_a_secret_written_on_a_is_read_on_b_at_once(cluster: Cluster) -> None:
    on_a = await native(cluster.a, "vault-room", "keeper", "secrets")
    on_b = await native(cluster.b, "vault-room", "keeper", "secrets")
    try:
        await on_a.request("secrets.set", {"id": "shared", "text": "canary-cluster-4711"})
        got = await on_b.request("secrets.get", {"id": "shared"})
        assert base64.b64decode(got["value"]) == b"canary-cluster-4711"
    finally:
        await on_a.close()
        await on_b.close()


async def test_metrics_count_events_both_ways_the_link_the_nodes_and_the_delivery_lag(cluster: Cluster) -> None:
    room = "metrics-room"
    sender = await native(cluster.a, room, "metered-a")
    receiver = await native(cluster.b, room, "metered-b")
    try:
        await until(lambda: _lists_all(sender, {receiver.participant_id}), "A lists B's participant", within=WAIT)
        a0, b0 = await scrape(cluster.a), await scrape(cluster.b)
        for i in range(MESSAGES):
            await sender.request("message.broadcast", {"message_type": "tick", "body": {"seq": i}})
        assert (await _native_messages(receiver, MESSAGES))[sender.participant_id] == list(range(MESSAGES))
        a1, b1 = await scrape(cluster.a), await scrape(cluster.b)
    finally:
        await sender.close()
        await receiver.close()
    sent = 'roomsvc_cluster_events_published_total{kind="message"}'
    got = 'roomsvc_cluster_events_received_total{kind="message"}'
    # one bus event per broadcast, whatever the number of participants on the other node
    assert a1[sent] - a0[sent] == MESSAGES
    assert b1[got] - b0[got] == MESSAGES
    # every event received was stamped by its sender: the lag histogram has one more each
    lag = b1["roomsvc_cluster_delivery_lag_seconds_count"] - b0["roomsvc_cluster_delivery_lag_seconds_count"]
    assert lag >= MESSAGES
    assert b1["roomsvc_cluster_delivery_lag_seconds_sum"] >= 0
    assert b1['roomsvc_cluster_delivery_lag_seconds_bucket{le="+Inf"}'] == b1["roomsvc_cluster_delivery_lag_seconds_count"]
    print(f"\nmean cross-node lag {(b1['roomsvc_cluster_delivery_lag_seconds_sum'] - b0['roomsvc_cluster_delivery_lag_seconds_sum']) / lag * 1000:.2f} ms")
    for node in (a1, b1):
        assert node["roomsvc_cluster_redis_connected"] == 1
        assert node.get('roomsvc_cluster_publish_failures_total{reason="redis"}', 0) == 0
    # both nodes beat: each counts itself and the other (the gauge moves with each heartbeat)
    for server in (cluster.a, cluster.b):
        await until(lambda s=server: _alive(s, 2), f"{server.url} counts two nodes alive", within=WAIT)


async def scrape(node: Server) -> dict[str, float]:
    """The node's /metrics as {'name{labels}': value} (labels as the exposition writes them)."""
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as reply:
        text = await reply.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("roomsvc_cluster_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def _alive(node: Server, count: int) -> bool:
    return (await scrape(node)).get("roomsvc_cluster_nodes_alive") == count


async def test_a_killed_node_s_participants_leave_within_the_bound_and_a_keeps_serving(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    room = "kill-room"
    c = start_node(tmp_path_factory.mktemp("node-c"), "c", {**cluster.env, **cluster_env(cluster.prefix, "node-c")}, cluster.a)
    try:
        watcher = await native(cluster.a, room, "watcher")
        doomed = [await native(c, room, f"doomed-{i}") for i in range(3)]
        doomed_ids = {d.participant_id for d in doomed}
        try:
            await until(lambda: _lists_all(watcher, doomed_ids), "A lists C's participants", within=WAIT)
            c.kill()  # SIGKILL: no goodbye
            killed = time.monotonic()
            await until(lambda: _lists_none(watcher, doomed_ids), "C's participants leave A's list", within=WAIT)
            took = time.monotonic() - killed
            print(f"\nC killed; its participants left A's list after {took:.2f} s (bound {BOUND:g} s + one poll)")
            assert await _left_ids(watcher, len(doomed)) == doomed_ids
            # A keeps serving: a new participant joins and messages flow
            late = await native(cluster.a, room, "late")
            try:
                await late.request("message.send", {"to": watcher.participant_id, "message_type": "still", "body": 1})
                assert (await _next_message(watcher, "still"))["data"]["body"] == 1
            finally:
                await late.close()
            assert ready(cluster.a)[0] == 200
        finally:
            for d in doomed:
                await d.close()
            await watcher.close()
    finally:
        if c.proc is not None and c.proc.poll() is None:
            c.stop()


async def _lists_all(client: NativeClient, ids: set[str]) -> bool:
    return ids <= await listed(client)


async def _lists_none(client: NativeClient, ids: set[str]) -> bool:
    return not (ids & await listed(client))


async def _native_messages(client: NativeClient, count: int) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    while sum(len(v) for v in got.values()) < count:
        frame = await client.next_event("message", timeout=WAIT)
        got.setdefault(frame["data"]["from"]["id"], []).append(frame["data"]["body"]["seq"])
    return got




async def _next_message(client: NativeClient, message_type: str) -> dict[str, Any]:
    while True:
        frame = await client.next_event("message", timeout=WAIT)
        if frame["data"]["message_type"] == message_type:
            return frame


async def test_a_secret_request_from_a_answered_on_b_completes_on_a_sealed_on_the_bus(cluster: Cluster) -> None:
    room = "ask-room"
    canary = "canary-provided-across-nodes-9931"
    agent = await NativeClient.connect(cluster.a.ws_url(room), cluster.a.token("asker", room, api=("secrets",), role="agent"))
    person = await native(cluster.b, room, "answerer", "secrets")
    other = await native(cluster.b, room, "meddler", "secrets")
    listener = redis.asyncio.Redis.from_url(REDIS_URL)
    bus = listener.pubsub()
    await bus.subscribe(f"{cluster.prefix}:events")
    try:
        await until(lambda: _lists_all(agent, {person.participant_id}), "A lists the person on B", within=WAIT)
        ask = {"url": "secret://db", "type": "text/plain", "from_participant_id": person.participant_id, "timeout": 15}
        task = asyncio.get_running_loop().create_task(agent.request("secrets.request_secret", ask, timeout=20))
        push = (await person.next_event("secrets.request_secret", timeout=WAIT))["data"]
        assert push["from"]["identity"] == "asker"
        # only the participant asked may answer, on its own node too
        with pytest.raises(ResponseError) as refused:
            await other.request("secrets.provide_secret", {"request_id": push["request_id"], "text": "evil"})
        assert refused.value.name == "not_found"
        await person.request("secrets.provide_secret", {"request_id": push["request_id"], "text": canary})
        result = await asyncio.wait_for(task, WAIT)
        assert base64.b64decode(result["value"]) == canary.encode()
        assert (await person.next_event("secrets.request_ended", timeout=WAIT))["data"]["outcome"] == "provided"
        # answering again finds nothing
        with pytest.raises(ResponseError):
            await person.request("secrets.provide_secret", {"request_id": push["request_id"], "text": "again"})
        # a rejection crosses too
        task = asyncio.get_running_loop().create_task(agent.request("secrets.request_secret", ask, timeout=20))
        push = (await person.next_event("secrets.request_secret", timeout=WAIT))["data"]
        await person.request("secrets.reject_secret", {"request_id": push["request_id"], "error": "not today"})
        with pytest.raises(ResponseError) as rejected:
            await asyncio.wait_for(task, WAIT)
        assert rejected.value.name == "rejected" and "not today" in str(rejected.value)
        # the value crossed sealed: it never appeared on the bus in the clear
        seen: list[bytes] = []
        quiet = 0
        while quiet < 5:  # read until the channel has been quiet for a while
            message = await bus.get_message(timeout=0.2)
            if message is None:
                quiet += 1
            elif message["type"] == "message":
                quiet = 0
                seen.append(message["data"])
        assert any(b"secret_answer" in data for data in seen)  # the answer did cross the bus
        assert seen and not any(canary.encode() in data or base64.b64encode(canary.encode()) in data for data in seen)
        assert canary not in cluster.a.stderr() and canary not in cluster.b.stderr()
    finally:
        await bus.aclose()
        await listener.aclose()
        for c in (agent, person, other):
            await c.close()


async def _left_ids(client: NativeClient, count: int) -> set[str]:
    """Ids announced as left, one by one or coalesced (``participants.changed``)."""
    left: set[str] = set()
    while len(left) < count:
        frame = await client.next_event(timeout=WAIT)
        if frame["type"] == "participant.left":
            left.add(frame["data"]["id"])
        elif frame["type"] == "participants.changed":
            left |= {p["id"] for p in frame["data"]["left"]}
    return left


async def _presence(client: NativeClient, kind: str) -> dict[str, Any]:
    """The next participant announced as ``kind`` (joined, updated, left), alone or coalesced."""
    while True:
        frame = await client.next_event(timeout=WAIT)
        if frame["type"] == f"participant.{kind}":
            return dict(frame["data"])
        if frame["type"] == "participants.changed" and frame["data"][kind]:
            return dict(frame["data"][kind][0])


async def test_events_on_the_channel_that_do_not_parse_are_dropped_and_fan_out_goes_on(cluster: Cluster) -> None:
    """Anything published on the cluster channel is input: not JSON, a duplicate key, a constant,
    a list, a missing field. Each is dropped with a log line and the nodes keep delivering."""
    room = "garbage-room"
    na = await native(cluster.a, room, "hearer")
    nb = await native(cluster.b, room, "speaker")
    publisher = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await until(lambda: _lists_all(na, {nb.participant_id}), "A lists the speaker on B", within=WAIT)
        for junk in ("not json", '{"k": "message", "k": "revoked"}', '{"k": NaN}', "[1, 2]", '"text"',
                     '{"k": "message", "n": "forged-node"}', "{" * 5000):
            await publisher.publish(f"{cluster.prefix}:events", junk)
        await nb.request("message.broadcast", {"message_type": "chat", "body": {"text": "still here"}})
        pushed = await na.next_event("message", timeout=WAIT)
        assert pushed["data"]["body"] == {"text": "still here"}
        assert "an event that does not parse was dropped" in cluster.a.stderr()
        assert "Traceback" not in cluster.a.stderr() and "Traceback" not in cluster.b.stderr()
    finally:
        await publisher.aclose()
        await nb.close()
        await na.close()
