"""Attacks on the per-identity rate limits, end to end through a real server: a flood of
secret operations (HTTP, native, MeshAgent), of messages (native, MeshAgent) and of new
flows is refused with 1010 rate_limited and a retry hint; the flooder's connection stays
open and every other identity is still served."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from roomsvc.transport.meshagent.packing import ErrorContent, JsonContent
from tests.meshagent.raw_client import RawClient
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import Server

ROOM = "limits"
BURST = {"SECRET_OPS": 5, "MESSAGES": 3, "FLOWS": 2}
#: an inline OAuth client the server allows; nothing listens there (the flows only wait)
INLINE = {"client_id": "c", "authorization_endpoint": "http://127.0.0.1:9/auth",
          "token_endpoint": "http://127.0.0.1:9/token", "scopes": ["read"]}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Any:
    env = {f"ROOMSVC_LIMITS_{k}_BURST": str(v) for k, v in BURST.items()}
    # a token every 100 s: nothing refills while a test runs
    env |= {f"ROOMSVC_LIMITS_{k}_RATE": "0.01" for k in BURST}
    env |= {"ROOMSVC_OAUTH_INLINE_ENDPOINTS": "http://127.0.0.1:9/*", "ROOMSVC_OAUTH_MIN_FLOW_TIMEOUT": "5"}
    srv = Server(Path(tmp_path_factory.mktemp("limits")) / "data", env=env).start()
    yield srv
    srv.stop()


def _check_hint(error: dict[str, Any]) -> None:
    assert error["code"] == 1010 and error["name"] == "rate_limited", error
    assert 0 < error["retry_after"] <= 100
    assert f"retry after {error['retry_after']:g} s" in error["message"]


async def test_http_secret_reads_past_the_limit_get_429_with_retry_after(limited: Server) -> None:
    alice = {"Authorization": f"Bearer {limited.token('alice-http', ROOM, api=('secrets',))}"}
    bob = {"Authorization": f"Bearer {limited.token('bob-http', ROOM, api=('secrets',))}"}
    url = f"{limited.url}/v1/rooms/{ROOM}/secrets/s"
    async with aiohttp.ClientSession() as http:
        async with http.put(url, json={"text": "v"}, headers=alice) as r:
            assert r.status == 200, await r.text()
        statuses = []
        for _ in range(BURST["SECRET_OPS"]):
            async with http.get(url, headers=alice) as r:
                statuses.append(r.status)
                if r.status == 429:
                    refused, retry = await r.json(), r.headers.get("Retry-After")
        assert statuses == [200] * (BURST["SECRET_OPS"] - 1) + [429]
        _check_hint(refused["error"])
        assert retry is not None and int(retry) >= refused["error"]["retry_after"]
        # the server still answers other identities (and alice's other kinds of calls)
        async with http.get(url, headers=bob) as r:
            assert r.status == 404
        async with http.get(f"{limited.url}/v1/rooms/{ROOM}/secrets", headers=alice) as r:
            assert r.status == 429  # list is a secret operation too


async def test_native_secret_ops_past_the_limit_keep_the_connection(limited: Server) -> None:
    carol = await NativeClient.connect(limited.ws_url(ROOM), limited.token("carol-ws", ROOM, api=("secrets",)))
    dave = await NativeClient.connect(limited.ws_url(ROOM), limited.token("dave-ws", ROOM, api=("secrets",)))
    try:
        await carol.request("secrets.set", {"id": "s", "text": "v"})
        for _ in range(BURST["SECRET_OPS"] - 1):
            await carol.request("secrets.exists", {"id": "s"})
        with pytest.raises(ResponseError) as refused:
            await carol.request("secrets.get", {"id": "s"})
        _check_hint(refused.value.error)
        # the connection is still open and served; dave is not affected
        await carol.request("ping")
        assert (await dave.request("secrets.exists", {"id": "s"})) == {"exists": False}
    finally:
        await carol.close()
        await dave.close()


async def test_meshagent_secret_ops_past_the_limit_keep_the_connection(limited: Server) -> None:
    mesh = await RawClient.connect(limited.url, ROOM, limited.token("frank-mesh", ROOM, api=("secrets",)))
    other = await RawClient.connect(limited.url, ROOM, limited.token("gina-mesh", ROOM, api=("secrets",)))
    try:
        for _ in range(BURST["SECRET_OPS"]):
            reply = await mesh.invoke("secrets", "exists", JsonContent({"secret_id": "x"}))
            assert reply == JsonContent({"exists": False})
        reply = await mesh.invoke("secrets", "get_secret", JsonContent({"secret_id": "x"}))
        assert isinstance(reply, ErrorContent) and reply.code == 1010, reply
        assert "retry after" in reply.text
        assert await other.invoke("secrets", "exists", JsonContent({"secret_id": "x"})) == JsonContent({"exists": False})
        # still connected: messaging is another budget
        reply = await mesh.invoke("messaging", "broadcast", JsonContent({"type": "t", "message_json": "{}"}))
        assert not isinstance(reply, ErrorContent), reply
    finally:
        await mesh.close()
        await other.close()


async def test_native_messages_past_the_limit_are_refused_and_the_socket_stays(limited: Server) -> None:
    sender = await NativeClient.connect(limited.ws_url(ROOM), limited.token("hank-ws", ROOM))
    listener = await NativeClient.connect(limited.ws_url(ROOM), limited.token("ivy-ws", ROOM))
    try:
        for i in range(BURST["MESSAGES"]):
            await sender.request("message.send", {"to": listener.participant_id, "message_type": "m", "body": i})
        with pytest.raises(ResponseError) as refused:
            await sender.request("message.broadcast", {"message_type": "m", "body": "flood"})
        assert refused.value.code == 1010 and refused.value.name == "rate_limited"
        with pytest.raises(ResponseError) as refused:
            await sender.request("call", {"to": listener.participant_id, "method": "m", "body": {}, "timeout": 5})
        assert refused.value.code == 1010
        received = [(await listener.next_event("message"))["data"]["body"] for _ in range(BURST["MESSAGES"])]
        assert received == list(range(BURST["MESSAGES"]))
        await sender.request("ping")
        # the listener's own budget is untouched
        await listener.request("message.send", {"to": sender.participant_id, "message_type": "m", "body": "hi"})
        assert (await sender.next_event("message"))["data"]["body"] == "hi"
    finally:
        await sender.close()
        await listener.close()


async def test_meshagent_messages_past_the_limit_are_refused_and_the_socket_stays(limited: Server) -> None:
    mesh = await RawClient.connect(limited.url, ROOM, limited.token("jack-mesh", ROOM, api=("secrets",)))
    try:
        for _ in range(BURST["MESSAGES"]):
            reply = await mesh.invoke("messaging", "broadcast", JsonContent({"type": "t", "message_json": "{}"}))
            assert not isinstance(reply, ErrorContent), reply
        reply = await mesh.invoke("messaging", "broadcast", JsonContent({"type": "t", "message_json": "{}"}))
        assert isinstance(reply, ErrorContent) and reply.code == 1010 and "retry after" in reply.text
        assert await mesh.invoke("secrets", "exists", JsonContent({"secret_id": "x"})) == JsonContent({"exists": False})
    finally:
        await mesh.close()


async def _pair(server: Server, agent: str, person: str) -> AsyncIterator[tuple[NativeClient, NativeClient]]:
    a = await NativeClient.connect(server.ws_url(ROOM), server.token(agent, ROOM, api=("secrets",), role="agent"))
    p = await NativeClient.connect(server.ws_url(ROOM), server.token(person, ROOM, api=("secrets",)))
    try:
        yield a, p
    finally:
        await a.close()
        await p.close()


async def test_new_oauth_flows_past_the_limit_are_refused_before_prompting_anyone(limited: Server) -> None:
    async for agent, person in _pair(limited, "kim-agent", "lou-person"):
        ask = {"from_participant_id": person.participant_id, "oauth": INLINE, "timeout": 30}
        waiting = [asyncio.ensure_future(agent.request("secrets.request_oauth_token", ask, timeout=60))
                   for _ in range(BURST["FLOWS"])]
        for _ in range(BURST["FLOWS"]):
            await person.next_event("secrets.request_oauth_token")
        with pytest.raises(ResponseError) as refused:
            await agent.request("secrets.request_oauth_token", ask)
        assert refused.value.code == 1010 and refused.value.name == "rate_limited"
        with pytest.raises(ResponseError) as refused:
            await agent.request("secrets.request_secret", {"url": "secret://x", "from_participant_id": person.participant_id,
                                                           "timeout": 30})
        assert refused.value.code == 1010
        # the person was prompted only for the flows let through
        with pytest.raises(asyncio.TimeoutError):
            await person.next_event("secrets.request_oauth_token", timeout=0.5)
        for task in waiting:
            task.cancel()


async def test_secret_requests_past_the_limit_are_refused(limited: Server) -> None:
    async for agent, person in _pair(limited, "max-agent", "ned-person"):
        ask = {"url": "secret://db", "from_participant_id": person.participant_id, "timeout": 30}
        waiting = [asyncio.ensure_future(agent.request("secrets.request_secret", ask, timeout=60)) for _ in range(BURST["FLOWS"])]
        for _ in range(BURST["FLOWS"]):
            await person.next_event("secrets.request_secret")
        with pytest.raises(ResponseError) as refused:
            await agent.request("secrets.request_secret", ask)
        assert refused.value.code == 1010 and refused.value.name == "rate_limited"
        for task in waiting:
            task.cancel()


@pytest.mark.parametrize("kind", ["secrets.request_oauth_token", "secrets.request_secret"])
async def test_a_timeout_below_the_minimum_is_refused(limited: Server, kind: str) -> None:
    async for agent, person in _pair(limited, f"oli-{kind[8:]}", f"pat-{kind[8:]}"):
        data: dict[str, Any] = {"from_participant_id": person.participant_id, "timeout": 0.001}
        data |= {"oauth": INLINE} if kind.endswith("oauth_token") else {"url": "secret://x"}
        with pytest.raises(ResponseError) as refused:
            await agent.request(kind, data)
        assert refused.value.code == 1002 and "oauth.min_flow_timeout" in str(refused.value.message)
        with pytest.raises(asyncio.TimeoutError):
            await person.next_event(timeout=0.5)
