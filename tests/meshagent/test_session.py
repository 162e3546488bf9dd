"""A MeshAgent session's presence and message pushes, over a real RoomService and a fake
connection: no socket, no event loop beyond the joins."""

from __future__ import annotations

from types import SimpleNamespace

from roomsvc.clock import FakeClock
from roomsvc.domain.events import ParticipantInfo, RequestEnded, SecretRequested
from roomsvc.domain.principal import Principal
from roomsvc.domain.rooms import Participant, RoomService
from roomsvc.ids import Identity, ParticipantId, RoomName
from roomsvc.transport.meshagent.session import (
    PROTOCOL,
    MeshAgentSession,
    SessionRegistry,
    message_object,
    participant_entry,
    room_ws_url,
)
from tests.support.fakes import FakeConnection, FakeRooms, Sink

ROOM = RoomName("r")


def principal(identity: str) -> Principal:
    return Principal(identity=Identity(identity), room=ROOM)


async def mesh(rooms: RoomService, registry: SessionRegistry, identity: str) -> tuple[MeshAgentSession, FakeConnection]:
    conn = FakeConnection()
    session = MeshAgentSession(SimpleNamespace(rooms=rooms), conn, registry)  # type: ignore[arg-type]
    session.participant = await rooms.join(principal(identity), session, protocol=PROTOCOL)
    registry.add(session)
    return session, conn


async def native(rooms: RoomService, identity: str) -> Participant:
    return await rooms.join(principal(identity), Sink())


def test_entries_carry_the_identity_as_name() -> None:
    info = ParticipantInfo(ParticipantId("p"), Identity("alice"), "agent", {"name": "mallory", "x": 1})
    assert participant_entry(info) == {"id": "p", "role": "agent", "attributes": {"name": "alice", "x": 1}}


def test_message_bodies_become_objects() -> None:
    assert message_object({"a": 1}) == {"a": 1}
    assert message_object([1]) == {"value": [1]}
    assert message_object("hi") == {"value": "hi"}
    assert message_object(None) == {}


def test_room_urls_use_websocket_schemes() -> None:
    assert room_ws_url("https://h.example", "r") == "wss://h.example/rooms/r"
    assert room_ws_url("http://127.0.0.1:8080", "r") == "ws://127.0.0.1:8080/rooms/r"


async def test_presence_follows_enable_join_update_disable_and_leave() -> None:
    rooms, registry = RoomService(rooms=FakeRooms(), clock=FakeClock()), SessionRegistry()  # type: ignore[arg-type]
    nat = await native(rooms, "nat")
    a, a_conn = await mesh(rooms, registry, "a")
    assert a_conn.take() == []  # nothing before enable

    a.enable_messaging()
    [enabled] = a_conn.take()
    assert (enabled["type"], enabled["from_participant_id"]) == ("messaging.enabled", a.me.id)
    assert enabled["message"] == {"participants": [{"id": nat.id, "role": "user", "attributes": {"name": "nat"}}]}

    b, b_conn = await mesh(rooms, registry, "b")
    assert a_conn.take() == []  # a MeshAgent peer is invisible until it enables
    b.enable_messaging()
    assert [p["id"] for p in b_conn.take()[0]["message"]["participants"]] == [nat.id, a.me.id]
    assert [(h["type"], h["from_participant_id"]) for h in a_conn.take()] == [("participant.enabled", b.me.id)]

    rooms.set_attributes(nat, {"mood": "ok"})
    for conn in (a_conn, b_conn):
        assert conn.take() == [{"from_participant_id": nat.id, "type": "participant.attributes",
                                "message": {"attributes": {"mood": "ok", "name": "nat"}}}]

    rooms.send(nat, a.me.id, "ping", [1, 2], b"att")
    assert a_conn.pushes[-1] == ("messaging.send", {"from_participant_id": nat.id, "type": "ping",
                                                    "message": {"value": [1, 2]}}, b"att")
    a_conn.take()

    b.disable_messaging()
    assert a_conn.take() == [{"from_participant_id": b.me.id, "type": "participant.disabled", "message": {"id": b.me.id}}]
    await rooms.leave(nat)
    assert [h["type"] for h in a_conn.take()] == ["participant.disabled"]
    assert b_conn.take() == []  # b disabled: it hears of nobody

    registry.remove(b)
    await rooms.leave(b.me)
    assert a_conn.take() == []  # b was no longer visible to a
    assert registry.in_room(ROOM) == [a]


async def test_notices_become_pushes_of_their_own_whatever_the_messaging_state() -> None:
    rooms, registry = RoomService(rooms=FakeRooms(), clock=FakeClock()), SessionRegistry()  # type: ignore[arg-type]
    a, a_conn = await mesh(rooms, registry, "a")
    rooms.notify(a.me, SecretRequested(
        request_id="r1", url="u", type="t", participant_id=a.me.id, timeout=5.0, delegate_to=None,
        requester=a.me.info(), owner=Identity("b"), usable_by=("b",),
    ))
    rooms.notify(a.me, RequestEnded("r1", "provided"))
    assert [(t, h) for t, h, _ in a_conn.pushes] == [
        ("secrets.request_secret", {"request_id": "r1", "request": {
            "url": "u", "type": "t", "participant_id": a.me.id, "timeout": 5, "delegate_to": None},
            "owner": "b", "usable_by": ["b"]}),
        ("messaging.send", {"from_participant_id": a.me.id, "type": "secrets.request_ended",
                            "message": {"request_id": "r1", "outcome": "provided"}}),
    ]
