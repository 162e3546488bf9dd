"""The MeshAgent endpoint at the wire level, against a real server: what the SDK never
sends (Gen-1 types, broken packets, text frames) and the upgrade refusals."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from roomsvc.transport.meshagent.framing import encode_packets
from roomsvc.transport.meshagent.packing import (
    BinaryContent,
    EmptyContent,
    ErrorContent,
    FileContent,
    JsonContent,
    pack,
    unpack,
)
from tests.meshagent.raw_client import RawClient
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import Server

ROOM = "wire-room"


async def connect(server: Server, identity: str, *api: str) -> RawClient:
    return await RawClient.connect(server.url, ROOM, server.token(identity, ROOM, api=api))


@pytest.mark.parametrize("case", ["none", "garbage", "expired", "wrong_room", "wrong_room_in_query"])
async def test_refused_tokens_are_403_before_the_upgrade(server: Server, case: str) -> None:
    """403, never 401: the SDK retries a 401 forever."""
    token = {
        "none": None,
        "garbage": "x.y.z",
        "expired": server.token("alice", ROOM, exp=int(time.time()) - 3600),
        "wrong_room": server.token("alice", "elsewhere"),
        "wrong_room_in_query": server.token("alice", "elsewhere"),
    }[case]
    url, headers = f"{server.url}/rooms/{ROOM}", {"Authorization": f"Bearer {token}"} if token else {}
    if case.endswith("_in_query"):
        url, headers = f"{url}?token={token}", {}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(url, headers=headers)
    assert caught.value.status == 403


async def test_a_plain_get_is_400_and_joins_nobody(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/rooms/{ROOM}", headers={"Authorization": f"Bearer {server.token('a', ROOM)}"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == 1002


async def test_handshake(server: Server) -> None:
    client = await connect(server, "alice")
    try:
        assert client.ready["room_name"] == ROOM
        assert client.ready["room_url"] == f"ws://127.0.0.1:{server.port}/rooms/{ROOM}"
        assert client.ready["session_id"]
        assert client.init == {"type": "init", "participantId": client.participant_id, "attributes": {"name": "alice"}}
    finally:
        await client.close()


async def test_gen1_secret_messages_use_the_same_tools(server: Server) -> None:
    client = await connect(server, "gen1", "secrets")
    try:
        header = {"secret_id": "old", "type": "text/plain", "name": "legacy", "delegated_to": None}
        assert await client.request("secrets.set_secret", header, b"v1") == JsonContent({"id": "old"})
        got = await client.request("secrets.get_secret", {"secret_id": "old"})
        assert got == FileContent("legacy", "text/plain", b"v1")
        listed = await client.request("secrets.list_secrets", {})
        assert listed == JsonContent({"secrets": [{"id": "old", "type": "text/plain", "name": "legacy", "delegated_to": None}]})
        assert await client.request("secrets.delete_secret", {"id": "old"}) == EmptyContent()
        again = await client.request("secrets.delete_secret", {"id": "old"})
        assert isinstance(again, ErrorContent) and again.code == 1003
    finally:
        await client.close()


async def test_errors_are_error_contents_with_codes(server: Server) -> None:
    client = await connect(server, "errs", "secrets")
    try:
        unknown_tool = await client.invoke("secrets", "no_such_tool", JsonContent({}))
        assert isinstance(unknown_tool, ErrorContent) and unknown_tool.code == 1003
        no_id = await client.invoke("secrets", "get_secret", JsonContent({"secret_id": None}))
        assert isinstance(no_id, ErrorContent) and no_id.code == 1002
        too_big = await client.invoke("secrets", "set_secret", BinaryContent({"secret_id": "big"}, b"x" * 70_000))
        assert isinstance(too_big, ErrorContent) and too_big.code == 1002 and "max_value_size" in too_big.text
        hosted = await client.request("room.invoke_tool", {"toolkit": "t", "tool": "x", "participant_id": "p",
                                                          "arguments": {"type": "empty"}})
        assert isinstance(hosted, ErrorContent) and hosted.code == 1003
        unknown_type = await client.request("room.frobnicate", {})
        assert isinstance(unknown_type, ErrorContent) and unknown_type.code == 1002
    finally:
        await client.close()


async def test_an_oversized_message_is_answered_and_the_connection_stays(server: Server) -> None:
    client = await connect(server, "big", "secrets")
    try:
        header = {"toolkit": "secrets", "tool": "set_secret", "arguments": {"type": "binary", "headers": {"secret_id": "b"}}}
        reply = await client.request("room.invoke_tool", header, b"x" * 300_000)
        assert isinstance(reply, ErrorContent) and reply.code == 1002 and "max_message_size" in reply.text
        assert await client.invoke("secrets", "exists", JsonContent({"secret_id": "b"})) == JsonContent({"exists": False})
    finally:
        await client.close()


async def test_a_text_frame_closes_with_1003(server: Server) -> None:
    client = await connect(server, "texter")
    try:
        await client.ws.send_str("{}")
        assert await client.wait_closed() == 1003
    finally:
        await client.close()


async def test_repeated_broken_packets_close_with_1008(server: Server) -> None:
    client = await connect(server, "breaker")
    try:
        for _ in range(5):
            await client.ws.send_bytes(encode_packets(99, "x", b"y" * 10)[1])  # data without a start
        assert await client.wait_closed() == 1008
    finally:
        await client.close()


async def test_enable_and_disable_announce_to_meshagent_peers(server: Server) -> None:
    a = await connect(server, "peer-a")
    b = await connect(server, "peer-b")
    try:
        assert await a.invoke("messaging", "enable", JsonContent({})) == EmptyContent()
        enabled = unpack((await a.push("messaging.send")).payload)[0]
        assert enabled["type"] == "messaging.enabled" and enabled["message"] == {"participants": []}
        assert await b.request("messaging.enable", {}) == EmptyContent()  # the Gen-1 form
        b_sees = unpack((await b.push("messaging.send")).payload)[0]["message"]["participants"]
        assert [p["id"] for p in b_sees] == [a.participant_id]
        added = unpack((await a.push("messaging.send")).payload)[0]
        assert (added["type"], added["from_participant_id"], added["message"]["attributes"]) == (
            "participant.enabled", b.participant_id, {"name": "peer-b"},
        )
        await b.invoke("messaging", "disable", JsonContent({}))
        removed = unpack((await a.push("messaging.send")).payload)[0]
        assert (removed["type"], removed["message"]) == ("participant.disabled", {"id": b.participant_id})
    finally:
        await a.close()
        await b.close()


async def test_native_messages_reach_a_meshagent_client_and_calls_fail_fast(server: Server) -> None:
    mesh = await connect(server, "mesh")
    native = await NativeClient.connect(server.ws_url(ROOM), server.token("native", ROOM))
    try:
        # delivered even before messaging.enable: the native sender was told "delivered"
        await native.request("message.send", {"to": mesh.participant_id, "message_type": "ping", "body": [1, 2]})
        header, trailer = unpack((await mesh.push("messaging.send")).payload)
        assert header == {"from_participant_id": native.participant_id, "type": "ping", "message": {"value": [1, 2]}}
        assert trailer == b""
        # MeshAgent has no participant calls: the caller hears so at once, not after its timeout
        started = time.monotonic()
        with pytest.raises(ResponseError) as caught:
            await native.request("call", {"to": mesh.participant_id, "method": "m", "body": {}, "timeout": 20})
        assert caught.value.code == 1007 and time.monotonic() - started < 2
    finally:
        await mesh.close()
        await native.close()


async def test_a_send_to_nobody_is_1003(server: Server) -> None:
    client = await connect(server, "lonely")
    try:
        reply = await client.invoke("messaging", "send", JsonContent(
            {"to_participant_id": "nobody", "type": "x", "message_json": "{}", "attachment_base64": None}
        ))
        assert isinstance(reply, ErrorContent) and reply.code == 1003
    finally:
        await client.close()


async def test_client_responses_to_pushes_are_ignored_not_answered_or_counted(server: Server) -> None:
    """A client may answer a push with ``__response__``: no error reply (it could
    ping-pong) and no strike, even past max_bad_messages and with a broken payload."""
    client = await connect(server, "answerer", "secrets")
    try:
        for i in range(7):
            payload = pack({"type": "empty"}) if i % 2 else b"not a payload"
            for packet in encode_packets(2**40 + i, "__response__", payload):
                await client.ws.send_bytes(packet)
        assert await client.invoke("secrets", "exists", JsonContent({"secret_id": "x"})) == JsonContent({"exists": False})
        assert client.pushes.empty() and not client.ws.closed
    finally:
        await client.close()


async def test_request_tools_answer_typed_errors(server: Server) -> None:
    client = await connect(server, "asker", "secrets")
    try:
        async def code(tool: str, content: JsonContent | BinaryContent) -> int | None:
            reply = await client.invoke("secrets", tool, content)
            assert isinstance(reply, ErrorContent), reply
            return reply.code

        assert await code("provide_secret", BinaryContent({"request_id": "nope", "error": None}, b"v")) == 1003
        assert await code("provide_secret", BinaryContent({"request_id": "nope", "error": "no"}, b"")) == 1003
        assert await code("request_secret", JsonContent(
            {"url": "secret://x", "type": "text/plain", "participant_id": "nobody", "timeout": 5, "delegate_to": None})) == 1003
        assert await code("request_secret", JsonContent({"url": "secret://x", "participant_id": None})) == 1002
        assert await code("delete_requested_secret", JsonContent({"url": "secret://x", "type": "t", "delegated_to": None})) == 1003
        ref = {"openai_connector_id": None, "server_url": "https://mcp.example", "client_secret_id": None}
        assert await code("request_oauth_token", JsonContent({"connector": ref, "oauth": None, "redirect_uri": "x",
                                                               "participant_id": client.participant_id})) == 1002
        assert await code("get_offline_oauth_token", JsonContent({"connector": None, "oauth": None})) == 1002
        assert await code("provide_oauth_authorization", JsonContent({"request_id": "nope", "code": "c", "error": None})) == 1003
    finally:
        await client.close()


@pytest.mark.parametrize("protocol", ["native", "meshagent"])
async def test_from_participant_id_wins_over_participant_id_on_both_protocols(server: Server, protocol: str) -> None:
    """A request naming the participant asked twice asks ``from_participant_id`` (the
    MeshAgent tools used to pick ``participant_id``, the native ops the other)."""
    named = await NativeClient.connect(server.ws_url(ROOM), server.token(f"named-{protocol}", ROOM, api=("secrets",)))
    other = await NativeClient.connect(server.ws_url(ROOM), server.token(f"other-{protocol}", ROOM, api=("secrets",)))
    ask = {"url": "secret://both", "type": "text/plain", "timeout": 10,
           "from_participant_id": named.participant_id, "participant_id": other.participant_id}
    if protocol == "native":
        asker: NativeClient | RawClient = await NativeClient.connect(
            server.ws_url(ROOM), server.token("asker-native", ROOM, api=("secrets",)))
        asked = asyncio.ensure_future(asker.request("secrets.request_secret", ask, timeout=20))
    else:
        asker = await connect(server, "asker-meshagent", "secrets")
        asked = asyncio.ensure_future(asker.invoke("secrets", "request_secret", JsonContent(ask)))
    try:
        push = await named.next_event("secrets.request_secret")
        assert push["data"]["request"]["participant_id"] == named.participant_id
        await named.request("secrets.reject_secret", {"request_id": push["data"]["request_id"], "error": "no"})
        if protocol == "native":
            with pytest.raises(ResponseError) as refused:
                await asked
            assert refused.value.name == "rejected"
        else:
            reply = await asked
            assert isinstance(reply, ErrorContent) and reply.code == 1011
    finally:
        asked.cancel()
        for client in (asker, named, other):
            await client.close()
