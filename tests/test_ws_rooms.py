"""Rooms over the native websocket protocol, against a real server with real clients."""

from __future__ import annotations

import asyncio
import base64
import re

import aiohttp
import pytest

from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import Server


async def join(server: Server, identity: str, room: str = "room1", **kwargs) -> NativeClient:
    return await NativeClient.connect(server.ws_url(room), server.token(identity, room, **kwargs))


async def test_three_participants_see_each_other_message_and_leave(server: Server) -> None:
    alice = await join(server, "alice")
    bob = await join(server, "bob", role="agent")
    carol = await join(server, "carol", role="tool")
    try:
        # presence: the welcome lists who was there, and joins are pushed
        assert {p["identity"] for p in bob.welcome["participants"]} == {"alice"}
        assert {p["identity"] for p in carol.welcome["participants"]} == {"alice", "bob"}
        assert (await alice.next_event("participant.joined"))["data"]["identity"] == "bob"
        joined_carol = (await alice.next_event("participant.joined"))["data"]
        assert joined_carol == {"id": carol.participant_id, "identity": "carol", "role": "tool", "attributes": {}}
        # ids are hex: never starting with '-', they can be passed as command-line arguments
        assert all(re.fullmatch(r"[0-9a-f]{24}", c.participant_id) for c in (alice, bob, carol))
        assert (await bob.next_event("participant.joined"))["data"]["identity"] == "carol"
        listed = await alice.request("participants.list")
        assert {p["identity"] for p in listed["participants"]} == {"alice", "bob", "carol"}

        # a direct message reaches only its target, with body and binary attachment
        attachment = bytes(range(256)) * 4
        await alice.request("message.send", {
            "to": bob.participant_id, "message_type": "greeting", "body": {"text": "hi bob"},
            "attachment": base64.b64encode(attachment).decode(),
        })
        got = (await bob.next_event("message"))["data"]
        assert got["from"]["identity"] == "alice" and got["message_type"] == "greeting"
        assert got["body"] == {"text": "hi bob"} and base64.b64decode(got["attachment"]) == attachment
        assert got["broadcast"] is False

        # a broadcast reaches everybody else
        reply = await carol.request("message.broadcast", {"message_type": "news", "body": [1, 2, 3]})
        assert reply == {"delivered": 2}
        for client in (alice, bob):
            event = (await client.next_event("message"))["data"]
            assert (event["from"]["identity"], event["body"], event["broadcast"]) == ("carol", [1, 2, 3], True)
        # carol's direct-message queue got nothing of it, alice got nothing of alice->bob
        with pytest.raises(asyncio.TimeoutError):
            await carol.next_event("message", timeout=0.3)

        # attributes are pushed to everybody, the changer included
        await bob.request("participant.set_attributes", {"attributes": {"status": "busy"}})
        for client in (alice, carol, bob):
            updated = (await client.next_event("participant.updated"))["data"]
            assert updated["identity"] == "bob" and updated["attributes"] == {"status": "busy"}

        # one leaves, the others are told
        await carol.close()
        for client in (alice, bob):
            left = (await client.next_event("participant.left"))["data"]
            assert left["id"] == carol.participant_id
        with pytest.raises(ResponseError) as info:
            await alice.request("message.send", {"to": carol.participant_id, "message_type": "x", "body": {}})
        assert info.value.code == 1003
    finally:
        for client in (alice, bob, carol):
            await client.close()


async def test_several_connections_of_one_identity_are_several_participants(server: Server) -> None:
    one = await join(server, "dana", room="twins")
    two = await join(server, "dana", room="twins")
    try:
        assert one.participant_id != two.participant_id
        assert (await one.next_event("participant.joined"))["data"]["id"] == two.participant_id
    finally:
        await one.close()
        await two.close()


async def test_a_waiting_request_does_not_hold_up_others_on_the_connection(server: Server) -> None:
    asker = await join(server, "asker", room="calls")
    callee = await join(server, "callee", room="calls")
    try:
        pending = asyncio.ensure_future(
            asker.request("call", {"to": callee.participant_id, "method": "think", "body": {"q": 1}, "timeout": 20}, timeout=25)
        )
        call = (await callee.next_event("call"))["data"]
        assert call["method"] == "think" and call["from"]["identity"] == "asker"
        # while the call waits, the same connection keeps working, with responses out of order
        for i in range(5):  # noqa: B007 - the last i is the body sent below
            assert await asker.request("ping") == {"pong": True}
        await asker.request("message.send", {"to": callee.participant_id, "message_type": "meanwhile", "body": i})
        assert (await callee.next_event("message"))["data"]["body"] == 4
        assert not pending.done()
        await callee.request("call.reply", {"call_id": call["call_id"], "body": {"answer": 42}})
        assert await pending == {"body": {"answer": 42}}

        # a reject comes back as an error; a reply from someone else is refused
        pending = asyncio.ensure_future(asker.request("call", {"to": callee.participant_id, "method": "m", "timeout": 20}))
        call = (await callee.next_event("call"))["data"]
        with pytest.raises(ResponseError) as info:
            await asker.request("call.reply", {"call_id": call["call_id"], "body": "forged"})
        assert info.value.code == 1003
        await callee.request("call.reply", {"call_id": call["call_id"], "error": "no thanks"})
        with pytest.raises(ResponseError) as info:
            await pending
        assert info.value.name == "rejected" and "no thanks" in info.value.message

        # and a call nobody answers times out
        with pytest.raises(ResponseError) as info:
            await asker.request("call", {"to": callee.participant_id, "method": "m", "timeout": 0.3})
        assert info.value.code == 1009
    finally:
        await asker.close()
        await callee.close()


async def test_requests_beyond_the_per_connection_bound_are_refused_not_queued(make_server) -> None:
    server = make_server({"ROOMSVC_WEBSOCKET_MAX_CONCURRENT_REQUESTS": "2"})
    asker = await join(server, "asker", room="busy")
    callee = await join(server, "callee", room="busy")
    try:
        calls = [asyncio.ensure_future(asker.request("call", {"to": callee.participant_id, "method": "m", "timeout": 20}))
                 for _ in range(2)]
        await callee.next_event("call")
        await callee.next_event("call")
        with pytest.raises(ResponseError) as info:
            await asker.request("ping")
        assert info.value.code == 1010 and info.value.name == "overloaded"
        await callee.close()  # the callee leaving fails the waiting calls
        for call in calls:
            with pytest.raises(ResponseError) as info:
                await call
            assert info.value.code == 1003
        assert await asker.request("ping") == {"pong": True}
    finally:
        await asker.close()
        await callee.close()


async def test_browser_style_auth_message(server: Server) -> None:
    client = await NativeClient.connect(server.ws_url("room1"), server.token("browser"), auth_message=True)
    try:
        assert client.welcome["participant"]["identity"] == "browser"
    finally:
        await client.close()


async def test_rooms_can_be_required_to_exist_first(make_server) -> None:
    server = make_server({"ROOMSVC_ROOMS_AUTO_CREATE": "0"})
    async with aiohttp.ClientSession() as session:
        # the token is fine, the room is missing: the upgrade happens and the close says why
        ws = await session.ws_connect(server.ws_url("planned"), headers={"Authorization": f"Bearer {server.token('a', 'planned')}"})
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4004
        created = await session.post(f"{server.url}/v1/admin/rooms", json={"name": "planned"},
                                     headers={"Authorization": f"Bearer {server.operator_token()}"})
        assert created.status == 201
    client = await NativeClient.connect(server.ws_url("planned"), server.token("a", "planned"))
    await client.close()


async def test_sigterm_closes_every_connection_with_1001(make_server) -> None:
    server = make_server()
    clients = [await join(server, f"p{i}", room="closing") for i in range(3)]
    assert server.stop() == 0
    for client in clients:
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.ws.close_code == 1001
        await client.close()
    assert "shutting down" in server.stderr() and "stopped" in server.stderr()
