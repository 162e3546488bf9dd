"""RoomService across nodes, in the domain (issue 15): two RoomServices joined by a fake
bus that hands each event to the other synchronously (the Redis adapter is tested end to
end in tests/cluster). Without a bus a RoomService publishes nothing."""

from __future__ import annotations

import asyncio

import pytest

from roomsvc.clock import FakeClock
from roomsvc.domain.cluster import BusEvent, LocalBus, NodeGone
from roomsvc.domain.events import CallReceived, MessageReceived, ParticipantJoined, ParticipantLeft, ParticipantUpdated
from roomsvc.domain.principal import Principal
from roomsvc.domain.rooms import RoomService
from roomsvc.errors import NotFound, Overloaded
from roomsvc.ids import Identity, RoomName
from tests.support.fakes import FakeRooms, Sink

ROOM = RoomName("r")


class LinkedBus:
    """Hands what one node publishes to the other's RoomService; can be cut."""

    def __init__(self, node: str) -> None:
        self.node_id = node
        self.peer: RoomService | None = None
        self.published: list[BusEvent] = []
        self.cut = False

    def publish(self, event: BusEvent) -> None:
        self.published.append(event)
        if self.peer is not None:
            self.peer.receive(event)

    def unavailable(self) -> str | None:
        return "redis unavailable" if self.cut else None


def two_nodes(max_participants: int = 500) -> tuple[RoomService, RoomService, LinkedBus, LinkedBus]:
    bus_a, bus_b = LinkedBus("a"), LinkedBus("b")
    a = RoomService(rooms=FakeRooms(), clock=FakeClock(), bus=bus_a, max_participants=max_participants)  # type: ignore[arg-type]
    b = RoomService(rooms=FakeRooms(), clock=FakeClock(), bus=bus_b, max_participants=max_participants)  # type: ignore[arg-type]
    bus_a.peer, bus_b.peer = b, a
    return a, b, bus_a, bus_b


def who(name: str) -> Principal:
    return Principal(identity=Identity(name), room=ROOM)


async def test_presence_and_messages_cross_and_each_node_delivers_to_its_own() -> None:
    a, b, bus_a, _ = two_nodes()
    sink_a, sink_b = Sink(), Sink()
    pa = await a.join(who("ann"), sink_a)
    pb = await b.join(who("bob"), sink_b)
    assert {p.id for p in a.participants(ROOM)} == {p.id for p in b.participants(ROOM)} == {pa.id, pb.id}
    assert [type(e) for e in sink_a.events] == [ParticipantJoined]
    assert a.local_participants(ROOM) == [pa] and a.is_remote(a.find(ROOM, pb.id))
    # a broadcast is published once, and delivered by B to its own participant
    before = len(bus_a.published)
    assert a.broadcast(pa, "t", {"n": 1}) == 1
    assert len(bus_a.published) == before + 1
    assert isinstance(sink_b.events[-1], MessageReceived) and sink_b.events[-1].body == {"n": 1}
    a.send(pa, pb.id, "direct", "hi")
    assert sink_b.events[-1].broadcast is False  # type: ignore[union-attr]
    b.set_attributes(pb, {"mood": "calm"})
    assert isinstance(sink_a.events[-1], ParticipantUpdated)
    await b.leave(pb)
    assert isinstance(sink_a.events[-1], ParticipantLeft) and a.participants(ROOM) == [pa]


async def test_calls_cross_and_a_gone_node_s_participants_leave_ending_calls_to_them() -> None:
    a, b, _, _ = two_nodes()
    sink_a, sink_b = Sink(), Sink()
    pa = await a.join(who("ann"), sink_a)
    pb = await b.join(who("bob"), sink_b)
    calling = asyncio.ensure_future(a.call(pa, pb.id, "m", {"x": 1}, timeout=5))
    asked = await sink_b.notice(CallReceived)
    with pytest.raises(NotFound):  # only the callee may answer
        b.answer(await b.join(who("eve"), Sink()), asked.call_id, body="forged")
    b.answer(pb, asked.call_id, body={"y": 2})
    assert await calling == {"y": 2}
    waiting = asyncio.ensure_future(a.call(pa, pb.id, "m", {}, timeout=5))
    await sink_b.notice(CallReceived)
    a.receive(NodeGone("b"))
    with pytest.raises(NotFound, match="left"):
        await waiting
    assert a.participants(ROOM) == [pa] and isinstance(sink_a.events[-1], ParticipantLeft)
    with pytest.raises(NotFound):
        a.find(ROOM, pb.id)


async def test_a_room_counts_everyone_and_a_cut_off_node_admits_nobody() -> None:
    a, b, _, bus_b = two_nodes(max_participants=2)
    await a.join(who("ann"), Sink())
    await b.join(who("bob"), Sink())
    with pytest.raises(Overloaded, match="full"):  # the room counts everyone, on every node
        await a.join(who("cid"), Sink())
    bus_b.cut = True
    assert b.unavailable() == "redis unavailable"
    with pytest.raises(Overloaded, match="redis unavailable"):
        await b.join(Principal(identity=Identity("dan"), room=RoomName("other")), Sink())


async def test_one_node_alone_publishes_nothing_and_is_always_available() -> None:
    rooms = RoomService(rooms=FakeRooms(), clock=FakeClock(), bus=LocalBus())  # type: ignore[arg-type]
    p = await rooms.join(who("ann"), Sink())
    assert rooms.unavailable() is None and rooms.participants(ROOM) == [p] and rooms.remote_nodes() == set()
