"""Presence announcements are coalesced per native connection (websocket.presence_coalesce):
seen on the wire, frame by frame, against a real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.support.native_client import NativeClient
from tests.support.server import Server


@pytest.fixture(scope="module")
def slow_window(tmp_path_factory: pytest.TempPathFactory):
    """A window long enough that joins made one after another land in it."""
    srv = Server(tmp_path_factory.mktemp("coalesce") / "data",
                 env={"ROOMSVC_WEBSOCKET_PRESENCE_COALESCE": "3.0"}).start()
    yield srv
    srv.stop()


class RawWatcher:
    """A native participant that keeps every frame as sent (no expansion)."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session, self.ws = session, ws

    @classmethod
    async def connect(cls, server: Server, identity: str, room: str) -> "RawWatcher":
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(server.ws_url(room), headers={"Authorization": f"Bearer {server.token(identity, room)}"})
        watcher = cls(session, ws)
        assert (await watcher.frame())["type"] == "welcome"
        return watcher

    async def frame(self, timeout: float = 5) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return dict(json.loads(msg.data))

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def test_a_burst_of_joins_is_one_frame_after_the_first(slow_window: Server) -> None:
    room = "burst"
    watcher = await RawWatcher.connect(slow_window, "watcher", room)
    others: list[NativeClient] = []
    try:
        for i in range(6):
            others.append(await NativeClient.connect(slow_window.ws_url(room), slow_window.token(f"p{i}", room)))
        await others[-1].close()  # joined and left within the window: never announced
        first = await watcher.frame()
        assert first == {"type": "participant.joined", "data": others[0].welcome["participant"]}
        changed = await watcher.frame(timeout=10)
        assert changed["type"] == "participants.changed", changed
        assert [p["id"] for p in changed["data"]["joined"]] == [o.participant_id for o in others[1:5]]
        assert changed["data"]["updated"] == [] and changed["data"]["left"] == []
    finally:
        for other in others[:-1]:
            await other.close()
        await watcher.close()


async def test_other_frames_never_overtake_pending_presence(slow_window: Server) -> None:
    room = "order"
    watcher = await RawWatcher.connect(slow_window, "watcher", room)
    first = await NativeClient.connect(slow_window.ws_url(room), slow_window.token("q0", room))
    second = await NativeClient.connect(slow_window.ws_url(room), slow_window.token("q1", room))
    try:
        assert (await watcher.frame())["type"] == "participant.joined"  # q0, at once
        # q1's join is pending in the window; its broadcast must not arrive before it
        await second.request("message.broadcast", {"message_type": "hello", "body": {}})
        joined = await watcher.frame(timeout=1.5)  # well before the 3 s window ends
        assert joined == {"type": "participant.joined", "data": second.welcome["participant"]}
        message = await watcher.frame(timeout=1.5)
        assert message["type"] == "message" and message["data"]["from"]["id"] == second.participant_id
    finally:
        await first.close()
        await second.close()
        await watcher.close()


async def test_zero_turns_coalescing_off(make_server) -> None:
    server = make_server(env={"ROOMSVC_WEBSOCKET_PRESENCE_COALESCE": "0"})
    watcher = await RawWatcher.connect(server, "watcher", "quiet")
    others = [await NativeClient.connect(server.ws_url("quiet"), server.token(f"r{i}", "quiet")) for i in range(3)]
    try:
        frames = [await watcher.frame() for _ in range(3)]
        assert [f["type"] for f in frames] == ["participant.joined"] * 3
        assert [f["data"]["id"] for f in frames] == [o.participant_id for o in others]
    finally:
        for other in others:
            await other.close()
        await watcher.close()


async def test_the_client_library_expands_coalesced_frames(slow_window: Server) -> None:
    """roomsvc.client.room hands out the single announcements a coalesced frame stands for."""
    from roomsvc.client.room import RoomConnection

    conn = await RoomConnection.open(slow_window.url, "library", slow_window.token("lib", "library"))
    others = [await NativeClient.connect(slow_window.ws_url("library"), slow_window.token(f"s{i}", "library"))
              for i in range(3)]
    try:
        pushes = [await asyncio.wait_for(conn.next_push(), 5) for _ in range(3)]
        assert [(p or {}).get("type") for p in pushes] == ["participant.joined"] * 3
        assert [(p or {})["data"]["id"] for p in pushes] == [o.participant_id for o in others]
    finally:
        for other in others:
            await other.close()
        await conn.close()


async def test_an_update_then_a_leave_in_one_window_are_both_announced(slow_window: Server) -> None:
    room = "netting"
    watcher = await RawWatcher.connect(slow_window, "watcher", room)
    mover = await NativeClient.connect(slow_window.ws_url(room), slow_window.token("mover", room))
    try:
        assert (await watcher.frame())["type"] == "participant.joined"  # at once; the window opens
        await mover.request("participant.set_attributes", {"attributes": {"mood": "leaving"}})
        await mover.close()
        changed = await watcher.frame(timeout=10)
        assert changed["type"] == "participants.changed", changed
        assert changed["data"]["joined"] == []
        assert [(p["id"], p["attributes"]) for p in changed["data"]["updated"]] == [(mover.participant_id, {"mood": "leaving"})]
        assert [p["id"] for p in changed["data"]["left"]] == [mover.participant_id]
    finally:
        await watcher.close()
