"""The port between the rooms of this node and the rooms of the other nodes (issue 15).

A :class:`RoomBus` carries what happens in a room to every other node: joins, leaves and
attribute updates (presence), and messages (broadcasts and messages to one participant on
another node). Events from the other nodes come back through
:meth:`roomsvc.domain.rooms.RoomService.receive`. One node alone uses :class:`LocalBus`,
which carries nothing, so a single node behaves exactly as it does without a cluster.

The Redis adapter (roomsvc/integrations/redis_bus.py) keeps the order of what one node
publishes, so messages arrive in order per sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Union

from roomsvc.domain.events import CallReceived, MessageReceived, OAuthConsentRequested, ParticipantInfo, SecretRequested
from roomsvc.domain.ports import EncryptedBlob
from roomsvc.ids import ParticipantId, RoomName


@dataclass(frozen=True)
class RemoteJoined:
    node: str
    room: RoomName
    participant: ParticipantInfo


@dataclass(frozen=True)
class RemoteUpdated:
    node: str
    room: RoomName
    participant: ParticipantInfo


@dataclass(frozen=True)
class RemoteLeft:
    node: str
    room: RoomName
    participant_id: ParticipantId


@dataclass(frozen=True)
class RemoteMessage:
    """A message sent on ``node``: to one participant (``to``) or to the room (``to`` None)."""

    node: str
    room: RoomName
    to: ParticipantId | None
    message: MessageReceived


@dataclass(frozen=True)
class RemoteCall:
    """A participant on ``node`` calls ``to`` (on the receiving node) and waits there."""

    node: str
    room: RoomName
    to: ParticipantId
    call: CallReceived


@dataclass(frozen=True)
class CallAnswered:
    """The callee answered a call from another node: ``body``, or ``error`` (its message)."""

    node: str
    call_id: str
    body: Any = None
    error: str | None = None


@dataclass(frozen=True)
class RemoteRequestEnded:
    """A request addressed to ``participant_id`` (connected to the receiving node) ended."""

    node: str
    room: RoomName
    participant_id: ParticipantId
    request_id: str
    outcome: str


@dataclass(frozen=True)
class RemoteSecretRequest:
    """A participant on ``node`` asks one on the receiving node for a secret."""

    node: str
    room: RoomName
    notice: SecretRequested


@dataclass(frozen=True)
class RemoteConsentRequest:
    """A participant on ``node`` asks one on the receiving node to consent to an OAuth
    client (the flow itself is a PostgreSQL row; its start link is sealed on the bus)."""

    node: str
    room: RoomName
    notice: OAuthConsentRequested


@dataclass(frozen=True)
class SecretAnswered:
    """The participant asked answered on ``node``: ``provided`` with the value sealed under
    the vault's active key (never in the clear on the bus), or ``rejected`` with a reason."""

    node: str
    request_id: str
    outcome: str
    sealed: EncryptedBlob | None = None
    reason: str = ""


@dataclass(frozen=True)
class RequestCompleted:
    """A pending request (an OAuth consent flow) ended on ``node``; the node whose
    requester waits for it reads the outcome from the shared database."""

    node: str
    request_id: str


@dataclass(frozen=True)
class NodeGone:
    """``node`` stopped answering (its heartbeat expired): its participants have left."""

    node: str


@dataclass(frozen=True)
class NodePresent:
    """Who ``node`` holds now, as read from the shared presence after this node was cut off
    from the others: any other participant of ``node`` known here left while the events
    were not carried (never published: the bus makes it from what it reads)."""

    node: str
    participants: frozenset[str]


BusEvent = Union[
    RemoteJoined, RemoteUpdated, RemoteLeft, RemoteMessage, RemoteRequestEnded, RemoteSecretRequest, RemoteConsentRequest,
    SecretAnswered, RemoteCall, CallAnswered, RequestCompleted, NodeGone, NodePresent,
]


class RoomBus(Protocol):
    """Carries this node's room events to the other nodes."""

    @property
    def node_id(self) -> str: ...

    def publish(self, event: BusEvent) -> None:
        """Queue an event for the other nodes, in order; never blocks."""

    def unavailable(self) -> str | None:
        """Why this node may not admit participants now (cut off from the others), or None."""


class LocalBus:
    """One node: nothing to carry, always available."""

    node_id = "local"

    def publish(self, event: BusEvent) -> None:
        return None

    def unavailable(self) -> str | None:
        return None
