"""Events the room pushes to participants. Transports turn them into wire messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from roomsvc.ids import Identity, ParticipantId


@dataclass(frozen=True)
class ParticipantInfo:
    id: ParticipantId
    identity: Identity
    role: str
    attributes: Mapping[str, Any]
    protocol: str = "native"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "identity": self.identity, "role": self.role, "attributes": dict(self.attributes)}


@dataclass(frozen=True)
class ParticipantJoined:
    participant: ParticipantInfo


@dataclass(frozen=True)
class ParticipantLeft:
    participant: ParticipantInfo


@dataclass(frozen=True)
class ParticipantUpdated:
    participant: ParticipantInfo


@dataclass(frozen=True)
class MessageReceived:
    sender: ParticipantInfo
    message_type: str
    body: Any
    attachment: bytes | None = None
    broadcast: bool = False


@dataclass(frozen=True)
class CallReceived:
    """Another participant asks this one something and waits for the answer."""

    call_id: str
    sender: ParticipantInfo
    method: str
    body: Any


@dataclass(frozen=True)
class Notice:
    """A server notice addressed to one participant (e.g. a secret or consent request)."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    #: bytes that travel with the notice (never logged)
    attachment: bytes | None = None


RoomEvent = ParticipantJoined | ParticipantLeft | ParticipantUpdated | MessageReceived | CallReceived | Notice
