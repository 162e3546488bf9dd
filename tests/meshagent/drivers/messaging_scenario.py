"""Messaging and presence with the real MeshAgent SDK 0.44, next to a native client.

stdin: {"url", "room", "tokens": {"bob", "carol"}, "native_name"}
stdout: JSON lines. ``{"step": ...}`` lines tell the pytest side (which drives the native
client) where the scenario is; it answers through the room, never through stdin. The last
line is ``{"result": {...}}``.

Sequence: bob enables messaging and must see the native participant at once; bob sends
it a message, the native side answers; carol joins and enables (bob sees her), carol
broadcasts and updates an attribute, carol leaves (bob sees her go); the native client
leaves (bob sees it go).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sdkutil import emit, read_config, room_client

TIMEOUT = 10


class Watch:
    """Collects MessagingClient events into futures keyed by what the scenario waits for."""

    def __init__(self, messaging: Any) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        for name in ("message", "participant_added", "participant_removed", "participant_attributes_updated"):
            messaging.on(name, lambda _name=name, **kw: self.queue.put_nowait((_name, next(iter(kw.values())))))

    async def next(self, name: str, match: Any = lambda _: True) -> Any:
        while True:
            got_name, value = await asyncio.wait_for(self.queue.get(), TIMEOUT)
            if got_name == name and match(value):
                return value


async def online(messaging: Any) -> None:
    # the SDK's messaging has no "online" event to wait on: poll its flag, bounded
    async with asyncio.timeout(TIMEOUT):
        while not messaging.online:
            await asyncio.sleep(0.02)


def describe(p: Any) -> dict[str, Any]:
    return {"id": p.id, "role": p.role, "attributes": dict(p.attributes)}


async def main() -> None:
    cfg = read_config()
    url, room, tokens, native_name = cfg["url"], cfg["room"], cfg["tokens"], cfg["native_name"]
    out: dict[str, Any] = {}
    async with room_client(url, room, tokens["bob"]) as bob:
        watch = Watch(bob.messaging)
        await bob.messaging.enable()
        await online(bob.messaging)
        out["bob_id"] = bob.local_participant.id
        out["bob_sees_at_enable"] = [describe(p) for p in bob.messaging.get_participants()]
        native = bob.messaging.get_participant_by_name(native_name)
        emit(step="bob-online", bob_id=bob.local_participant.id)

        await bob.messaging.send_message(to=native, type="chat", message={"text": "hello native"}, attachment=b"\x00\x01")
        reply = await watch.next("message", lambda m: m.type == "reply")
        out["bob_got_reply"] = {"from": reply.from_participant_id, "message": reply.message,
                                "attachment": list(reply.attachment)}

        async with room_client(url, room, tokens["carol"]) as carol:
            await carol.messaging.enable()
            await online(carol.messaging)
            added = await watch.next("participant_added")
            out["bob_saw_carol_added"] = describe(added)
            out["carol_sees_at_enable"] = sorted(p.attributes.get("name") for p in carol.messaging.get_participants())
            await carol.messaging.broadcast_message(type="hello-all", message={"n": 1})
            out["bob_got_broadcast"] = (await watch.next("message", lambda m: m.type == "hello-all")).message
            await carol.local_participant.set_attribute("mood", "sunny")
            updated = await watch.next("participant_attributes_updated")
            out["bob_saw_carol_attributes"] = describe(updated)
            out["carol_id"] = carol.local_participant.id
            emit(step="carol-done", carol_id=carol.local_participant.id)
        gone = await watch.next("participant_removed")
        out["bob_saw_removed_first"] = gone.id
        emit(step="waiting-native-leave")
        gone = await watch.next("participant_removed")
        out["bob_saw_removed_second"] = gone.id
    emit(result=out)


asyncio.run(main())
