"""Rooms and the participants present in them.

Presence lives in memory on the node that holds the connection; rooms themselves are
records in storage (so a deployment can require rooms to be created first). Delivery to
a participant goes through its :class:`ParticipantSink`, which must not block: the
transport queues the event and closes a connection whose queue overflows.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Protocol

from roomsvc.clock import Clock
from roomsvc.domain.cluster import (
    BusEvent,
    CallAnswered,
    LocalBus,
    NodeGone,
    NodePresent,
    RemoteCall,
    RemoteConsentRequest,
    RemoteJoined,
    RemoteLeft,
    RemoteMessage,
    RemoteRequestEnded,
    RemoteSecretRequest,
    RemoteUpdated,
    RequestCompleted,
    RoomBus,
    SecretAnswered,
)
from roomsvc.domain.events import (
    CallReceived,
    MessageReceived,
    Notice,
    OAuthConsentRequested,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    RequestEnded,
    RoomEvent,
    SecretRequested,
)
from roomsvc.domain.ports import RoomRecord, RoomRepository
from roomsvc.domain.principal import Principal
from roomsvc.domain.ratelimit import MESSAGES, RateLimiter
from roomsvc.errors import (
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    Rejected,
    RoomsvcError,
    Timeout,
    TooManyConnections,
)
from roomsvc.ids import Identity, ParticipantId, RoomName, parse_name

MAX_TYPE_LENGTH = 128
#: calls from other nodes remembered at most (unanswered ones are forgotten oldest first)
MAX_REMOTE_CALLS = 10000


class ParticipantSink(Protocol):
    def deliver(self, event: RoomEvent) -> None:
        """Queue an event for the participant; never blocks."""


@dataclass(frozen=True)
class Capabilities:
    """What a participant's client can do, declared by its transport when it joins: the
    domain asks these, never which protocol a participant speaks."""

    #: answers an OAuth consent request by running the redirect in its own app (it gets
    #: the PKCE challenge and hands over the code); otherwise it is sent a start link that
    #: a person opens, and roomsvc runs the redirect
    runs_own_redirect: bool = False


@dataclass(eq=False)
class Participant:
    id: ParticipantId
    room: RoomName
    principal: Principal
    sink: ParticipantSink
    attributes: dict[str, Any] = field(default_factory=dict)
    #: a label for presence (peers of the same protocol); decisions use ``capabilities``
    protocol: str = "native"
    capabilities: Capabilities = Capabilities()

    @property
    def identity(self) -> Identity:
        return self.principal.identity

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(
            id=self.id,
            identity=self.principal.identity,
            role=self.principal.role,
            attributes=dict(self.attributes),
            protocol=self.protocol,
        )


@dataclass
class _PendingCall:
    caller: Participant
    target: Participant
    future: asyncio.Future[Any]


class _RemoteSink:
    """The sink of a participant connected to another node: a message to it goes over the
    bus; other events are the other node's to deliver (it sees the same room)."""

    def __init__(self, bus: RoomBus, room: RoomName, participant_id: ParticipantId) -> None:
        self._bus, self._room, self._id = bus, room, participant_id

    def deliver(self, event: RoomEvent) -> None:
        if isinstance(event, MessageReceived):
            self._bus.publish(RemoteMessage(self._bus.node_id, self._room, self._id, event))


LeaveHook = Callable[[Participant], Awaitable[None] | None]
CompletionHook = Callable[[str], None]
#: issue 15: secret requests between nodes (kept by SecretRequestService)
SecretRequestHook = Callable[[Participant, SecretRequested], None]
SecretAnswerHook = Callable[[SecretAnswered], None]


class RoomService:
    """Joins, presence, messages and participant-to-participant calls."""

    def __init__(
        self,
        *,
        rooms: RoomRepository,
        clock: Clock,
        auto_create: bool = True,
        max_participants: int = 500,
        max_connections_per_identity: int = 16,
        limiter: RateLimiter | None = None,
        max_attributes: int = 64,
        max_attributes_size: int = 16384,
        bus: RoomBus | None = None,
    ) -> None:
        self._bus: RoomBus = bus or LocalBus()
        #: participants connected to other nodes (issue 15), by room, with the node holding each
        self._remote: dict[RoomName, dict[ParticipantId, Participant]] = defaultdict(dict)
        self._remote_node: dict[ParticipantId, str] = {}
        self._limiter = limiter or RateLimiter.off()
        self._rooms = rooms
        self._clock = clock
        self._auto_create = auto_create
        self._max_participants = max_participants
        self._max_per_identity = max_connections_per_identity
        self._max_attributes = max_attributes
        self._max_attributes_size = max_attributes_size
        self._present: dict[RoomName, dict[ParticipantId, Participant]] = defaultdict(dict)
        self._per_identity: dict[Identity, int] = defaultdict(int)
        self._calls: dict[str, _PendingCall] = {}
        #: issue 15: calls from other nodes to participants here: call id -> the callee
        self._remote_calls: dict[str, Participant] = {}
        self._leave_hooks: list[LeaveHook] = []
        self._completion_hooks: list[CompletionHook] = []
        self._secret_request_hooks: list[SecretRequestHook] = []
        self._secret_answer_hooks: list[SecretAnswerHook] = []
        #: rooms known to exist in storage
        self._known_rooms: set[RoomName] = set()

    # -- rooms ----------------------------------------------------------------------

    async def create_room(self, name: RoomName) -> RoomRecord:
        return await self._rooms.create_room(name, created_at=self._clock.now())

    async def list_rooms(self) -> list[RoomRecord]:
        return await self._rooms.list_rooms()

    def present_count(self) -> tuple[int, int]:
        """(rooms with someone present, participants present) on this node."""
        rooms = [r for r in self._present.values() if r]
        return len(rooms), sum(len(r) for r in rooms)

    # -- presence -------------------------------------------------------------------

    async def join(
        self,
        principal: Principal,
        sink: ParticipantSink,
        *,
        attributes: Mapping[str, Any] | None = None,
        protocol: str = "native",
        capabilities: Capabilities = Capabilities(),
    ) -> Participant:
        """Add a participant to its token's room and tell the others.

        Raises:
            PermissionDenied: the token has no room grant.
            NotFound: the room does not exist and rooms are not created on first join.
            TooManyConnections: the identity already has its maximum of connections.
            Overloaded: the room is full.
        """
        if principal.room is None:
            raise PermissionDenied("this token has no room grant")
        self._check_bus()
        room = principal.room
        if self._per_identity[principal.identity] >= self._max_per_identity:
            raise TooManyConnections(
                f"identity {principal.identity!r} already has {self._max_per_identity} connections"
            )
        if room not in self._known_rooms:
            if await self._rooms.get_room(room) is None:
                if not self._auto_create:
                    raise NotFound(f"room {room!r} does not exist; an operator must create it first")
                await self._rooms.ensure_room(room, created_at=self._clock.now())
            # rooms are never deleted: a join to a room seen once needs no storage read (issue 12)
            self._known_rooms.add(room)
        present = self._present[room]
        if len(present) + len(self._remote.get(room, {})) >= self._max_participants:
            raise Overloaded(f"room {room!r} is full")
        # re-check after the awaits above: another join of the same identity may have landed
        if self._per_identity[principal.identity] >= self._max_per_identity:
            raise TooManyConnections(
                f"identity {principal.identity!r} already has {self._max_per_identity} connections"
            )
        participant = Participant(
            # hex, never starting with '-', so an id can be passed as a command-line argument
            id=ParticipantId(secrets.token_hex(12)),
            room=room,
            principal=principal,
            sink=sink,
            attributes=self._check_attributes(dict(_attributes(attributes or {}))),
            protocol=protocol,
            capabilities=capabilities,
        )
        present[participant.id] = participant
        self._per_identity[principal.identity] += 1
        self._fan_out(participant, ParticipantJoined(participant.info()))
        self._bus.publish(RemoteJoined(self._bus.node_id, room, participant.info()))
        return participant

    def on_leave(self, hook: LeaveHook) -> None:
        """Run ``hook(participant)`` whenever a participant leaves (used by pending requests)."""
        self._leave_hooks.append(hook)

    async def leave(self, participant: Participant) -> None:
        present = self._present.get(participant.room, {})
        if present.pop(participant.id, None) is None:
            return
        if not present:
            self._present.pop(participant.room, None)
        self._per_identity[participant.identity] -= 1
        if self._per_identity[participant.identity] <= 0:
            del self._per_identity[participant.identity]
        for call_id in [c for c, callee in self._remote_calls.items() if callee is participant]:
            del self._remote_calls[call_id]  # the caller's node hears of the leave and ends the call
        for call_id, call in list(self._calls.items()):
            if call.target is participant and not call.future.done():
                call.future.set_exception(NotFound("the participant called has left the room"))
            if call.caller is participant or call.target is participant:
                self._calls.pop(call_id, None)
        self._fan_out(participant, ParticipantLeft(participant.info()))
        self._bus.publish(RemoteLeft(self._bus.node_id, participant.room, participant.id))
        for hook in self._leave_hooks:
            result = hook(participant)
            if result is not None:
                await result

    def participants(self, room: RoomName) -> list[Participant]:
        """Everyone present in the room: on this node, then on the other nodes."""
        return [*self._present.get(room, {}).values(), *self._remote.get(room, {}).values()]

    def local_participants(self, room: RoomName) -> list[Participant]:
        """The participants connected to this node."""
        return list(self._present.get(room, {}).values())

    @property
    def node_id(self) -> str:
        return self._bus.node_id

    def is_remote(self, participant: Participant) -> bool:
        return participant.id in self._remote_node

    def local_rooms(self) -> list[tuple[RoomName, ParticipantInfo]]:
        """Every participant of this node and its room (what the bus announces again
        after this node was cut off from the others)."""
        return [(p.room, p.info()) for room in self._present.values() for p in room.values()]

    def remote_nodes(self) -> set[str]:
        """The other nodes that hold someone present here."""
        return set(self._remote_node.values())

    def unavailable(self) -> str | None:
        """Why this node admits nobody now (it lost the cluster's bus), or None."""
        return self._bus.unavailable()

    def find(self, room: RoomName, participant_id: str) -> Participant:
        """The participant with that id in that room.

        Raises:
            NotFound: nobody with that id is present in the room.
        """
        found = self._present.get(room, {}).get(ParticipantId(participant_id))
        if found is None:
            found = self._remote.get(room, {}).get(ParticipantId(participant_id))
        if found is None:
            raise NotFound(f"no participant {participant_id!r} in this room")
        return found

    def set_attributes(self, participant: Participant, attributes: Mapping[str, Any]) -> None:
        """Merge ``attributes`` into the participant's and tell the room.

        The limits apply to the merged result, checked before anything changes: many
        small updates cannot grow past them, and a refused update changes nothing.

        Raises:
            InvalidRequest: not an object, a bad name, or the merged attributes over
                ``rooms.max_attributes`` / ``rooms.max_attributes_size``.
        """
        merged = self._check_attributes({**participant.attributes, **_attributes(attributes)})
        participant.attributes = merged
        self._fan_out(participant, ParticipantUpdated(participant.info()), include_self=True)
        self._bus.publish(RemoteUpdated(self._bus.node_id, participant.room, participant.info()))

    # -- messages -------------------------------------------------------------------

    # ``message_type`` and a call's ``method`` are whatever the client sent: _check_type checks them.
    # Each send, broadcast and call spends one ``messages`` token of the sender (RateLimited
    # when none is left): a flood costs every receiver, so it is stopped at the sender.

    def send(
        self, sender: Participant, to: str, message_type: object, body: Any, attachment: bytes | None = None
    ) -> None:
        self._limiter.check(MESSAGES, sender.room, sender.identity)
        target = self.find(sender.room, to)
        target.sink.deliver(MessageReceived(sender.info(), _check_type(message_type), body, attachment))

    def broadcast(
        self, sender: Participant, message_type: object, body: Any, attachment: bytes | None = None
    ) -> int:
        self._limiter.check(MESSAGES, sender.room, sender.identity)
        event = MessageReceived(sender.info(), _check_type(message_type), body, attachment, broadcast=True)
        remote = self._remote.get(sender.room)
        if remote:
            self._bus.publish(RemoteMessage(self._bus.node_id, sender.room, None, event))
        return self._fan_out(sender, event) + len(remote or ())

    def notify(self, participant: Participant, notice: Notice) -> None:
        """Deliver a notice (a secret or consent request, its end) to one participant.

        Raises:
            Overloaded: the participant is connected to another node; requests between
                nodes are not carried yet (docs/scale.md).
        """
        if self.is_remote(participant) and isinstance(notice, RequestEnded):
            self._bus.publish(RemoteRequestEnded(
                self._bus.node_id, participant.room, participant.id, notice.request_id, notice.outcome
            ))
            return
        if self.is_remote(participant) and isinstance(notice, SecretRequested):
            self._bus.publish(RemoteSecretRequest(self._bus.node_id, participant.room, notice))
            return
        if self.is_remote(participant) and isinstance(notice, OAuthConsentRequested):
            self._bus.publish(RemoteConsentRequest(self._bus.node_id, participant.room, notice))
            return
        if self.is_remote(participant):
            raise Overloaded(
                f"participant {participant.id!r} is connected to another roomsvc node; "
                "requests to it must be made from that node (docs/scale.md)"
            )
        participant.sink.deliver(notice)

    def notify_identity(self, room: RoomName, identity: Identity, notice: Notice) -> int:
        """Deliver a notice to every connection of one identity in a room."""
        count = 0
        for p in self.local_participants(room):
            if p.identity == identity:
                p.sink.deliver(notice)
                count += 1
        return count

    # -- calls between participants ------------------------------------------------------

    async def call(self, caller: Participant, to: str, method: object, body: Any, *, timeout: float) -> Any:
        """Ask another participant and wait for its answer.

        Raises:
            NotFound: no such participant, or it left before answering.
            Timeout: no answer within ``timeout`` seconds.
            RoomsvcError: the error the callee answered with.
        """
        self._limiter.check(MESSAGES, caller.room, caller.identity)
        target = self.find(caller.room, to)
        call_id = secrets.token_urlsafe(12)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = _PendingCall(caller, target, future)
        try:
            received = CallReceived(call_id, caller.info(), _check_type(method, "call method"), body)
            if self.is_remote(target):
                self._bus.publish(RemoteCall(self._bus.node_id, caller.room, target.id, received))
            else:
                target.sink.deliver(received)
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"participant {to!r} did not answer within {timeout:g} s") from None
        finally:
            self._calls.pop(call_id, None)

    def answer(self, callee: Participant, call_id: str, *, body: Any = None, error: RoomsvcError | None = None) -> None:
        if self._remote_calls.get(call_id) is callee:
            del self._remote_calls[call_id]
            self._bus.publish(CallAnswered(self._bus.node_id, call_id, body, None if error is None else error.message))
            return
        call = self._calls.get(call_id)
        if call is None or call.target is not callee:
            raise NotFound(f"no pending call {call_id!r} addressed to you")
        if not call.future.done():
            if error is not None:
                call.future.set_exception(error)
            else:
                call.future.set_result(body)

    # -- events from the other nodes (issue 15) ---------------------------------------------

    def receive(self, event: BusEvent) -> None:
        """Apply what happened on another node and tell this node's participants."""
        if isinstance(event, RemoteMessage):
            if event.to is None:
                for p in self.local_participants(event.room):
                    p.sink.deliver(event.message)
            else:
                target = self._present.get(event.room, {}).get(event.to)
                if target is not None:
                    target.sink.deliver(event.message)
        elif isinstance(event, (RemoteJoined, RemoteUpdated)):
            info = event.participant
            room = self._remote[event.room]
            known = room.get(info.id)
            if known is None:
                room[info.id] = self._remote_participant(event.room, info)
                self._remote_node[info.id] = event.node
                self._tell_local(event.room, ParticipantJoined(info))
            elif dict(known.attributes) != dict(info.attributes):
                known.attributes = dict(info.attributes)
                self._tell_local(event.room, ParticipantUpdated(info))
        elif isinstance(event, RemoteLeft):
            self._remote_left(event.room, event.participant_id)
        elif isinstance(event, RemoteRequestEnded):
            target = self._present.get(event.room, {}).get(event.participant_id)
            if target is not None:
                target.sink.deliver(RequestEnded(event.request_id, event.outcome))
        elif isinstance(event, RemoteSecretRequest):
            asked = self._present.get(event.room, {}).get(event.notice.participant_id)
            if asked is not None:
                for secret_hook in self._secret_request_hooks:
                    secret_hook(asked, event.notice)
                asked.sink.deliver(event.notice)
        elif isinstance(event, RemoteCall):
            callee = self._present.get(event.room, {}).get(event.to)
            if callee is not None:
                while len(self._remote_calls) >= MAX_REMOTE_CALLS:
                    del self._remote_calls[next(iter(self._remote_calls))]
                self._remote_calls[event.call.call_id] = callee
                callee.sink.deliver(event.call)
        elif isinstance(event, CallAnswered):
            call = self._calls.get(event.call_id)
            if call is not None and self.is_remote(call.target) and not call.future.done():
                if event.error is not None:
                    call.future.set_exception(Rejected(event.error[:500]))
                else:
                    call.future.set_result(event.body)
        elif isinstance(event, RemoteConsentRequest):
            consenter = self._present.get(event.room, {}).get(event.notice.participant_id)
            if consenter is not None:
                consenter.sink.deliver(event.notice)
        elif isinstance(event, SecretAnswered):
            for answer_hook in self._secret_answer_hooks:
                answer_hook(event)
        elif isinstance(event, RequestCompleted):
            for hook in self._completion_hooks:
                hook(event.request_id)
        elif isinstance(event, NodeGone):
            for room_name, room in list(self._remote.items()):
                for pid in [pid for pid in room if self._remote_node.get(pid) == event.node]:
                    self._remote_left(room_name, pid)
        elif isinstance(event, NodePresent):
            # a leave missed while this node was cut off from the others: reconcile
            for room_name, room in list(self._remote.items()):
                for pid in [pid for pid in room
                            if self._remote_node.get(pid) == event.node and pid not in event.participants]:
                    self._remote_left(room_name, pid)

    def announce_completion(self, request_id: str) -> None:
        """Tell the other nodes that a pending request ended here (its requester may wait there)."""
        self._bus.publish(RequestCompleted(self._bus.node_id, request_id))

    def announce_secret_answer(self, answer: SecretAnswered) -> None:
        """Send the answer to a secret request made on another node to that node."""
        self._bus.publish(answer)

    def on_secret_request(self, hook: SecretRequestHook) -> None:
        """Run ``hook(target, notice)`` when a participant of this node is asked from another node."""
        self._secret_request_hooks.append(hook)

    def on_secret_answer(self, hook: SecretAnswerHook) -> None:
        self._secret_answer_hooks.append(hook)

    def on_completion(self, hook: CompletionHook) -> None:
        """Run ``hook(request_id)`` when another node says a pending request ended."""
        self._completion_hooks.append(hook)

    def _remote_participant(self, room: RoomName, info: ParticipantInfo) -> Participant:
        principal = Principal(identity=info.identity, role=info.role, room=room)
        return Participant(
            id=info.id, room=room, principal=principal, sink=_RemoteSink(self._bus, room, info.id),
            attributes=dict(info.attributes), protocol=info.protocol,
        )

    def _remote_left(self, room_name: RoomName, participant_id: ParticipantId) -> None:
        room = self._remote.get(room_name, {})
        gone = room.pop(participant_id, None)
        self._remote_node.pop(participant_id, None)
        if not room:
            self._remote.pop(room_name, None)
        if gone is not None:
            self._tell_local(room_name, ParticipantLeft(gone.info()))
            for call_id, call in list(self._calls.items()):
                if call.target is gone and not call.future.done():
                    call.future.set_exception(NotFound("the participant called has left the room"))
                    self._calls.pop(call_id, None)

    def _tell_local(self, room: RoomName, event: RoomEvent) -> None:
        for p in self.local_participants(room):
            p.sink.deliver(event)

    def _check_bus(self) -> None:
        reason = self._bus.unavailable()
        if reason is not None:
            raise Overloaded(f"{reason}: this node admits nobody until it reaches the other nodes again")

    # -- internals ------------------------------------------------------------------

    def _check_attributes(self, attributes: dict[str, Any]) -> dict[str, Any]:
        """``attributes`` (a participant's whole set) when within the limits."""
        if len(attributes) > self._max_attributes:
            raise InvalidRequest(f"at most {self._max_attributes} attributes per participant")
        try:
            size = len(json.dumps(attributes, ensure_ascii=False, allow_nan=False).encode())
        except (TypeError, ValueError):
            raise InvalidRequest("attribute values must be JSON") from None
        if size > self._max_attributes_size:
            raise InvalidRequest(f"a participant's attributes may take at most {self._max_attributes_size} bytes as JSON")
        return attributes

    def _fan_out(self, sender: Participant, event: RoomEvent, *, include_self: bool = False) -> int:
        count = 0
        for p in self.local_participants(sender.room):
            if p is sender and not include_self:
                continue
            p.sink.deliver(event)
            count += 1
        return count


def _check_type(value: object, what: str = "message type") -> str:
    """A message type or call method: shown to other participants and in their logs, so
    the identity character set (no spaces, newlines or terminal escapes), at most 128."""
    return parse_name(value, what)


def _attributes(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(attributes, Mapping):
        raise InvalidRequest("attributes must be an object")
    for key in attributes:
        if not isinstance(key, str) or not key or len(key) > MAX_TYPE_LENGTH:
            raise InvalidRequest(f"attribute names must be strings of 1-{MAX_TYPE_LENGTH} characters")
    return attributes
