"""Events the room pushes to participants. Transports turn them into wire messages."""

from __future__ import annotations

from dataclasses import dataclass
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


# -- notices: addressed to one participant, rendered by each protocol ---------------------------
#
# Each is a plain value; the wire names and shapes are the transports' (the native codec's
# ``event_frame``, MeshAgent's ``notices.notice_push``).


@dataclass(frozen=True)
class SecretRequested:
    """Another participant asks this one for a plain secret (it answers with provide or reject)."""

    request_id: str
    url: str
    type: str
    #: the participant asked (the recipient)
    participant_id: ParticipantId
    timeout: float
    delegate_to: Identity | None
    requester: ParticipantInfo
    #: who will hold the value, and who may use it
    owner: Identity
    usable_by: tuple[str, ...]


@dataclass(frozen=True)
class OAuthConsentRequested:
    """Another participant asks this one to consent to an OAuth client.

    Exactly one of two ways to answer is set: ``start_url``, roomsvc's one-time link for a
    person to open (participants that do not run their own redirect), or ``by_app``: the
    participant's app runs the redirect to ``redirect_uri`` with ``challenge`` (PKCE S256,
    None without PKCE) and answers with the code."""

    request_id: str
    connector: str | None
    #: the client as a consenting app may see it (never the client secret)
    oauth: Mapping[str, Any]
    participant_id: ParticipantId
    timeout: float
    delegate_to: Identity | None
    redirect_uri: str
    requester: ParticipantInfo
    expires_at: float
    #: who will own the credential, and who may use it: shown to the person before consenting
    owner: Identity
    usable_by: tuple[str, ...]
    start_url: str | None = None
    challenge: str | None = None

    @property
    def by_app(self) -> bool:
        return self.start_url is None


@dataclass(frozen=True)
class RequestEnded:
    """A secret or OAuth request addressed to this participant ended (``outcome``)."""

    request_id: str
    outcome: str


@dataclass(frozen=True)
class CredentialNeedsReauth:
    """An OAuth credential of this participant's identity can no longer be refreshed."""

    id: str
    connector: str | None
    subject: str
    reason: str


Notice = SecretRequested | OAuthConsentRequested | RequestEnded | CredentialNeedsReauth

RoomEvent = ParticipantJoined | ParticipantLeft | ParticipantUpdated | MessageReceived | CallReceived | Notice
