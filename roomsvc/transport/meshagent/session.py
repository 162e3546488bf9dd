"""One MeshAgent connection's view of the room: its sink for room events and its pushes.

The domain delivers :mod:`~roomsvc.domain.events` to a participant's sink; for a MeshAgent
participant the sink is a :class:`MeshAgentSession`, which turns them into what the SDK's
``MessagingClient`` understands: one push type, ``messaging.send``, whose ``type`` says
what it carries (``messaging.enabled``, ``participant.enabled``, ``participant.disabled``,
``participant.attributes`` or an application message). Notices (secret and consent
requests, ...) become the pushes :mod:`~roomsvc.transport.meshagent.notices` names.

Who a MeshAgent client sees (its *visible* set, see docs/meshagent.md):

* nobody until it enables messaging (the SDK's presence starts with ``messaging.enabled``);
* then every native participant (native clients always take messages), and every
  MeshAgent participant that has enabled messaging too;
* a visible participant that leaves or disables messaging gets ``participant.disabled``.

Application messages are delivered whatever the enable state: a native sender was told
"delivered", and the SDK handles ``messaging.send`` from the moment it connects.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

from roomsvc.domain.events import (
    CallReceived,
    MessageReceived,
    Notice,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    RoomEvent,
)
from roomsvc.domain.rooms import Participant
from roomsvc.domain.services import Services
from roomsvc.errors import DependencyMissing, NotFound
from roomsvc.ids import ParticipantId
from roomsvc.transport.meshagent.framing import encode_packets
from roomsvc.transport.meshagent.notices import notice_push
from roomsvc.transport.meshagent.packing import Content, pack, pack_content
from roomsvc.transport.ws.connection import Connection

PROTOCOL = "meshagent"
RESPONSE = "__response__"
PUSH = "messaging.send"
#: ids of server pushes start here, far above the client's own counter (the SDK ignores them)
FIRST_PUSH_ID = 2**40


def room_ws_url(public_url: str, room: str) -> str:
    """The websocket URL of a room, from the server's public base URL."""
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if public_url.startswith(http):
            public_url = ws + public_url[len(http):]
            break
    return f"{public_url}/rooms/{room}"


def participant_entry(info: ParticipantInfo) -> dict[str, Any]:
    """A participant as the SDK's ``RemoteParticipant`` expects it.

    ``attributes.name`` is the identity (``get_participant_by_name`` looks it up); a
    participant cannot set it to someone else's name.
    """
    return {"id": info.id, "role": info.role, "attributes": {**dict(info.attributes), "name": info.identity}}


def message_object(body: Any) -> dict[str, Any]:
    """The SDK types a message as a JSON object: other native bodies are wrapped."""
    if isinstance(body, dict):
        return body
    return {} if body is None else {"value": body}


class MeshAgentSession:
    """Per-connection state: the participant, its messaging switch and what it was told."""

    def __init__(self, services: Services, conn: Connection, registry: SessionRegistry) -> None:
        self.services = services
        self.conn = conn
        self.registry = registry
        self.participant: Participant | None = None
        self.messaging_enabled = False
        self._visible: set[ParticipantId] = set()
        self._push_ids = itertools.count(FIRST_PUSH_ID)

    @property
    def me(self) -> Participant:
        if self.participant is None:
            raise RuntimeError("the session has not joined yet")
        return self.participant

    # -- sending (all through the connection's single writer) ----------------------------------

    def send(self, message_id: int, message_type: str, payload: bytes) -> None:
        for packet in encode_packets(message_id, message_type, payload):
            self.conn.send_nowait(packet)

    def reply(self, message_id: int, content: Content) -> None:
        self.send(message_id, RESPONSE, pack_content(content))

    def push(self, message_type: str, header: Mapping[str, Any], trailer: bytes = b"") -> None:
        self.send(next(self._push_ids), message_type, pack(header, trailer))

    def _messaging_push(self, sender: str, kind: str, message: dict[str, Any], attachment: bytes = b"") -> None:
        self.push(PUSH, {"from_participant_id": sender, "type": kind, "message": message}, attachment)

    # -- messaging presence ------------------------------------------------------------------

    def enable_messaging(self) -> None:
        """Announce the visible participants to this client, and this client to its peers."""
        me = self.me
        peers = [p for p in self.services.rooms.participants(me.room) if p is not me and self._takes_messages(p)]
        self.messaging_enabled = True
        self._visible = {p.id for p in peers}
        self._messaging_push(me.id, "messaging.enabled", {"participants": [participant_entry(p.info()) for p in peers]})
        for session in self.registry.in_room(me.room):
            if session is not self and session.messaging_enabled:
                session.peer_enabled(me.info())

    def disable_messaging(self) -> None:
        me = self.me
        was_enabled, self.messaging_enabled = self.messaging_enabled, False
        self._visible.clear()
        if was_enabled:
            for session in self.registry.in_room(me.room):
                if session is not self:
                    session.peer_disabled(me.id)

    def peer_enabled(self, info: ParticipantInfo) -> None:
        if self.messaging_enabled and info.id not in self._visible:
            self._visible.add(info.id)
            self._messaging_push(info.id, "participant.enabled", participant_entry(info))

    def peer_disabled(self, participant_id: ParticipantId) -> None:
        if participant_id in self._visible:
            self._visible.discard(participant_id)
            self._messaging_push(participant_id, "participant.disabled", {"id": participant_id})

    def _takes_messages(self, participant: Participant) -> bool:
        if participant.protocol != PROTOCOL:
            return True
        session = self.registry.get(participant.id)
        return session is not None and session.messaging_enabled

    # -- the ParticipantSink the domain delivers to ---------------------------------------------

    def deliver(self, event: RoomEvent) -> None:
        if isinstance(event, ParticipantJoined):
            if event.participant.protocol != PROTOCOL:  # MeshAgent peers announce themselves on enable
                self.peer_enabled(event.participant)
        elif isinstance(event, ParticipantLeft):
            self.peer_disabled(event.participant.id)
        elif isinstance(event, ParticipantUpdated):
            info = event.participant
            if info.id in self._visible:
                self._messaging_push(info.id, "participant.attributes", {"attributes": participant_entry(info)["attributes"]})
        elif isinstance(event, MessageReceived):
            self._messaging_push(
                event.sender.id, event.message_type, message_object(event.body), event.attachment or b""
            )
        elif isinstance(event, CallReceived):
            # MeshAgent has no participant-to-participant call a client could answer: fail
            # it now rather than leave the caller waiting for its timeout
            try:
                self.services.rooms.answer(
                    self.me, event.call_id, error=DependencyMissing("MeshAgent clients do not answer calls")
                )
            except NotFound:
                pass
        elif isinstance(event, Notice):
            push = notice_push(event, self.me.id)
            if push is not None:
                self.push(push.type, push.header, push.trailer)


class SessionRegistry:
    """The MeshAgent sessions present on this node, by room, to find messaging-enabled peers."""

    def __init__(self) -> None:
        self._by_id: dict[ParticipantId, MeshAgentSession] = {}
        self._by_room: dict[str, dict[ParticipantId, MeshAgentSession]] = {}

    def add(self, session: MeshAgentSession) -> None:
        me = session.me
        self._by_id[me.id] = session
        self._by_room.setdefault(me.room, {})[me.id] = session

    def remove(self, session: MeshAgentSession) -> None:
        me = session.participant
        if me is None or self._by_id.pop(me.id, None) is None:
            return
        room = self._by_room.get(me.room, {})
        room.pop(me.id, None)
        if not room:
            self._by_room.pop(me.room, None)

    def get(self, participant_id: ParticipantId) -> MeshAgentSession | None:
        return self._by_id.get(participant_id)

    def in_room(self, room: str) -> list[MeshAgentSession]:
        return list(self._by_room.get(room, {}).values())
