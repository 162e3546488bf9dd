"""Messaging and presence between the real MeshAgent SDK 0.44 and a native client.

The native client (tests/support/native_client.py) runs here; two SDK participants run in
drivers/messaging_scenario.py, which reports its steps as JSON lines.
"""

from __future__ import annotations

import base64

from tests.meshagent.sdk_peer import Driver, need_sdk
from tests.support.native_client import NativeClient
from tests.support.server import Server

ROOM = "chat-room"


async def test_sdk_and_native_clients_message_and_see_each_other(server: Server) -> None:
    need_sdk()
    native = await NativeClient.connect(server.ws_url(ROOM), server.token("native-alice", ROOM))
    driver = await Driver.start("messaging_scenario.py", {
        "url": server.url, "room": ROOM, "native_name": "native-alice",
        "tokens": {"bob": server.token("bob", ROOM, role="agent"), "carol": server.token("carol", ROOM)},
    })
    try:
        # the SDK participant appears to the native client when it joins
        bob_id = (await driver.step("bob-online"))["bob_id"]
        joined = (await native.next_event("participant.joined", timeout=10))["data"]
        assert joined == {"id": bob_id, "identity": "bob", "role": "agent", "attributes": {"name": "bob"}}

        # SDK -> native: body and attachment arrive through RoomService.send
        got = (await native.next_event("message", timeout=10))["data"]
        assert (got["from"]["id"], got["message_type"], got["body"]) == (bob_id, "chat", {"text": "hello native"})
        assert base64.b64decode(got["attachment"]) == b"\x00\x01" and got["broadcast"] is False

        # native -> SDK
        await native.request("message.send", {
            "to": bob_id, "message_type": "reply", "body": {"text": "hi sdk"},
            "attachment": base64.b64encode(b"\x02\x03").decode(),
        })

        # a second SDK participant: joins, broadcasts, changes an attribute, leaves
        carol_id = (await driver.step("carol-done"))["carol_id"]
        assert (await native.next_event("participant.joined"))["data"]["identity"] == "carol"
        broadcast = (await native.next_event("message"))["data"]
        assert (broadcast["from"]["id"], broadcast["message_type"], broadcast["body"], broadcast["broadcast"]) == (
            carol_id, "hello-all", {"n": 1}, True,
        )
        updated = (await native.next_event("participant.updated"))["data"]
        assert updated["id"] == carol_id and updated["attributes"] == {"name": "carol", "mood": "sunny"}
        assert (await native.next_event("participant.left"))["data"]["id"] == carol_id

        await driver.step("waiting-native-leave")
        native_id = native.participant_id
        await native.close()
        seen = (await driver.line())["result"]
    finally:
        if not native.closed.is_set():
            await native.close()
        await driver.stop()

    # what the SDK saw: the native participant at enable (always messaging-enabled), named
    assert seen["bob_sees_at_enable"] == [
        {"id": native_id, "role": "user", "attributes": {"name": "native-alice"}},
    ]
    assert seen["bob_got_reply"] == {"from": native_id, "message": {"text": "hi sdk"}, "attachment": [2, 3]}
    # MeshAgent peers appear to each other when they enable messaging
    assert seen["bob_saw_carol_added"] == {"id": carol_id, "role": "user", "attributes": {"name": "carol"}}
    assert seen["carol_sees_at_enable"] == ["bob", "native-alice"]
    assert seen["bob_got_broadcast"] == {"n": 1}
    assert seen["bob_saw_carol_attributes"]["attributes"] == {"name": "carol", "mood": "sunny"}
    assert seen["bob_saw_removed_first"] == carol_id
    assert seen["bob_saw_removed_second"] == native_id
