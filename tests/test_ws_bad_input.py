"""Every kind of bad input gets a documented error or close code; nobody else is affected."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import jwt
import pytest

from roomsvc.crypto.keys import new_signing_keyring
from roomsvc.crypto.tokens import mint
from roomsvc.domain.principal import build_claims
from tests.support.native_client import NativeClient
from tests.support.server import Server
from tests.support.waiting import until

ROOM = "hostile"


@pytest.fixture(scope="module")
async def bystander(server: Server):
    """A participant that must keep receiving whatever the others do."""
    client = await NativeClient.connect(server.ws_url(ROOM), server.token("bystander", ROOM))
    yield client
    await client.close()


async def assert_bystander_alive(server: Server, bystander: NativeClient) -> None:
    probe = await NativeClient.connect(server.ws_url(ROOM), server.token("prober", ROOM))
    try:
        while not bystander.events.empty():
            bystander.events.get_nowait()
        await probe.request("message.send", {"to": bystander.participant_id, "message_type": "probe", "body": 1})
        assert (await bystander.next_event("message"))["data"]["message_type"] == "probe"
    finally:
        await probe.close()


def _claims(server: Server, **extra) -> dict:
    claims = build_claims(identity="mallory", room=ROOM, issued_at=int(time.time()), ttl=600)
    claims.update(extra)
    return claims


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


BAD_TOKENS = {
    "another key": lambda s: mint(new_signing_keyring(), _claims(s)),
    "alg none": lambda s: f"{_b64({'alg': 'none'})}.{_b64(_claims(s, kid=s.keyring().primary.kid))}.",
    "other algorithm": lambda s: jwt.encode(_claims(s), s.keyring().primary.secret * 2, algorithm="HS512",
                                            headers={"kid": s.keyring().primary.kid}),
    "expired": lambda s: mint(s.keyring(), _claims(s, exp=int(time.time()) - 3600)),
    "no exp": lambda s: mint(s.keyring(), {k: v for k, v in _claims(s).items() if k != "exp"}),
    "malformed": lambda s: "abc.def",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
async def test_bad_tokens_never_get_a_socket(server: Server, bystander: NativeClient, name: str) -> None:
    token = BAD_TOKENS[name](server)
    async with aiohttp.ClientSession() as session:
        for how in ("header", "query"):
            kwargs = {"headers": {"Authorization": f"Bearer {token}"}} if how == "header" else {"params": {"token": token}}
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(server.ws_url(ROOM), **kwargs)
            assert info.value.status == 401
        # the browser path: upgrade first, then the auth message is refused with 4001
        ws = await session.ws_connect(server.ws_url(ROOM))
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4001
    await assert_bystander_alive(server, bystander)


@pytest.mark.parametrize(
    ("room_grant", "status", "close"),
    [(None, 403, 4003), ("elsewhere", 403, 4003)],
)
async def test_tokens_without_this_room_are_refused(server: Server, room_grant, status, close) -> None:
    token = server.token("mallory", room_grant)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(server.ws_url(ROOM), headers={"Authorization": f"Bearer {token}"})
        assert info.value.status == status
        ws = await session.ws_connect(server.ws_url(ROOM))
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        await ws.receive(timeout=5)
        assert ws.close_code == close


async def test_no_auth_message_in_time_closes_4008(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.ws_url(ROOM))
        msg = await ws.receive(timeout=5)  # auth_timeout is 1 s on test servers
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4008


async def test_token_in_the_query_stays_out_of_the_logs(server: Server) -> None:
    token = server.token("quiet", ROOM)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.ws_url(ROOM), params={"token": token})
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
        await ws.close()
    # the access log line is written when the socket's request ends
    await until(lambda: f"/v1/rooms/{ROOM}/ws" in server.stderr(), "the access log has the request")
    logs = server.stderr()
    assert token not in logs and token[-20:] not in logs and "token=" not in logs  # ...never its query


async def raw_session(server: Server):
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(server.ws_url(ROOM), headers={"Authorization": f"Bearer {server.token('mallory', ROOM)}"})
    welcome = json.loads((await ws.receive(timeout=5)).data)
    assert welcome["type"] == "welcome"
    return session, ws


async def next_reply(ws: aiohttp.ClientWebSocketResponse) -> dict:
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, ws.close_code)
        frame = json.loads(msg.data)
        if frame["type"] in ("response", "error"):
            return frame


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2, 3]", "must be a JSON object"),
        ('"just a string"', "must be a JSON object"),
        ('{"id": 1}', "needs a string 'type'"),
        ('{"type": 7, "id": 1}', "needs a string 'type'"),
        ('{"type": "ping", "id": 1, "id": 2}', "duplicate key"),
        ('{"type": "ping", "id": 1, "data": NaN}', "NaN is not valid JSON"),
        ('{"type": "ping", "id": 1, "data": []}', "'data' must be an object"),
        ('{"type": "ping", "id": {"x": 1}}', "'id' must be"),
        ('{"type": "ping", "data": {"a":' + "[" * 40 + "]" * 40 + "}}", "deeper than"),
        ('{"type": "no.such.thing", "id": 9}', "unknown message type"),
        ('{"type": "message.send", "id": 3, "data": {"to": 5}}', "'to' must be"),
        ('{"type": "message.broadcast", "id": 3, "data": {"message_type": ""}}', "invalid message type"),
        ('{"type": "message.broadcast", "id": 3, "data": {"message_type": "t", "attachment": "***"}}', "not valid base64"),
    ],
)
async def test_bad_messages_get_an_error_and_the_connection_lives(server: Server, bystander: NativeClient, payload: str, message: str) -> None:
    session, ws = await raw_session(server)
    try:
        await ws.send_str(payload)
        reply = await next_reply(ws)
        assert reply["ok"] is False and reply["error"]["code"] == 1002 and message in reply["error"]["message"]
        await ws.send_str(json.dumps({"type": "ping", "id": "after"}))
        reply = await next_reply(ws)
        assert reply == {"type": "response", "id": "after", "ok": True, "data": {"pong": True}}
    finally:
        await ws.close()
        await session.close()
    await assert_bystander_alive(server, bystander)


async def test_repeated_bad_messages_close_with_1008(server: Server) -> None:
    session, ws = await raw_session(server)
    try:
        for _ in range(5):  # websocket.max_bad_messages
            await ws.send_str("{oops")
        while (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert ws.close_code == 1008
    finally:
        await session.close()


@pytest.mark.parametrize(
    ("send", "code"),
    [
        (lambda ws: ws.send_bytes(b"\x00\x01binary"), 1003),
        (lambda ws: ws.send_frame(b"\xff\xfe\xfd", aiohttp.WSMsgType.TEXT), 1007),
        (lambda ws: ws.send_str(json.dumps({"type": "ping", "data": {"pad": "x" * 140_000}})), 1009),
    ],
    ids=["binary frame", "invalid utf-8", "oversized"],
)
async def test_frames_that_break_the_protocol_close_with_their_code(server: Server, bystander: NativeClient, send, code: int) -> None:
    session, ws = await raw_session(server)
    try:
        await send(ws)
        while (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert ws.close_code == code
    finally:
        await session.close()
    await assert_bystander_alive(server, bystander)


async def test_a_secret_sized_message_fits(server: Server) -> None:
    client = await NativeClient.connect(server.ws_url(ROOM), server.token("big", ROOM))
    try:
        body = {"blob": "x" * 100_000}  # under the 128 KiB default
        assert (await client.request("message.broadcast", {"message_type": "big", "body": body}))["delivered"] >= 0
    finally:
        await client.close()


async def test_connection_cap_per_identity_closes_4029(make_server) -> None:
    server = make_server({"ROOMSVC_WEBSOCKET_MAX_CONNECTIONS_PER_IDENTITY": "2"})
    clients = [await NativeClient.connect(server.ws_url("r"), server.token("greedy", "r")) for _ in range(2)]
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(server.ws_url("r"), headers={"Authorization": f"Bearer {server.token('greedy', 'r')}"})
            await ws.receive(timeout=5)
            assert ws.close_code == 4029
        other = await NativeClient.connect(server.ws_url("r"), server.token("modest", "r"))
        await other.close()
    finally:
        for client in clients:
            await client.close()


async def test_a_dead_peer_is_reaped_by_the_heartbeat(server: Server) -> None:
    watcher = await NativeClient.connect(server.ws_url("beats"), server.token("watcher", "beats"))
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(server.ws_url("beats"), autoping=False,
                                          headers={"Authorization": f"Bearer {server.token('ghost', 'beats')}"})
            ghost = json.loads((await ws.receive(timeout=5)).data)["data"]["participant"]["id"]
            # never answer pings: the server (heartbeat 1 s) must close and tell the others
            left = (await watcher.next_event("participant.left", timeout=10))["data"]
            assert left["id"] == ghost
            await ws.close()
    finally:
        await watcher.close()


async def test_a_slow_consumer_is_disconnected_while_others_still_receive(make_server) -> None:
    server = make_server({"ROOMSVC_WEBSOCKET_OUTBOUND_QUEUE": "8", "ROOMSVC_WEBSOCKET_SEND_TIMEOUT": "30"})
    room = "slow"
    # a raw socket that completes the upgrade and then never reads
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    token = server.token("sloth", room)
    writer.write(
        f"GET /v1/rooms/{room}/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    assert b"101" in await reader.readline()
    fast = await NativeClient.connect(server.ws_url(room), server.token("fast", room), max_msg_size=0)
    sender = await NativeClient.connect(server.ws_url(room), server.token("sender", room))
    try:
        body = "y" * 100_000
        received = 0
        for i in range(300):  # ~30 MB to the sloth: more than any socket buffer
            await sender.request("message.broadcast", {"message_type": "flood", "body": {"i": i, "pad": body}})
            while not fast.events.empty():
                if (fast.events.get_nowait()).get("type") == "message":
                    received += 1
        while received < 300:
            await fast.next_event("message", timeout=10)
            received += 1
        # the sloth was dropped (4030 counted), the fast reader got everything
        left = await fast.next_event("participant.left", timeout=10)
        assert left["data"]["identity"] == "sloth"
        async with aiohttp.ClientSession() as session:
            metrics = await (await session.get(f"{server.url}/metrics")).text()
        assert 'roomsvc_ws_closes_total{code="4030"} 1.0' in metrics
        assert 'roomsvc_ws_outbound_overflows_total{protocol="native"} 1.0' in metrics
        assert 'roomsvc_ws_slow_consumer_closes_total{protocol="native",reason="queue_overflow"} 1.0' in metrics
    finally:
        writer.close()
        await fast.close()
        await sender.close()


async def test_health_readiness_and_metrics(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        assert (await (await session.get(f"{server.url}/healthz")).json())["status"] == "ok"
        assert (await (await session.get(f"{server.url}/readyz")).json()) == {"status": "ready"}
        text = await (await session.get(f"{server.url}/metrics")).text()
        for name in ("roomsvc_connections", "roomsvc_rooms_active", "roomsvc_messages_total", "roomsvc_errors_total"):
            assert name in text
        assert 'roomsvc_errors_total{code="1002"}' in text  # the bad messages above were counted
        r = await session.get(f"{server.url}/v1/no/such/path")
        assert r.status == 404 and (await r.json())["error"]["code"] == 1002
