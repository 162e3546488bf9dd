"""The native protocol's JSON codec: strict parsing in, frames out.

Incoming text frames must hold one JSON object with a string ``type``, parsed strictly
(:mod:`roomsvc.strict_json`).
"""

from __future__ import annotations

import json
import weakref
from typing import Any, assert_never

from roomsvc import strict_json
from roomsvc.domain.events import (
    CallReceived,
    CredentialNeedsReauth,
    MessageReceived,
    Notice,
    OAuthConsentRequested,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    RequestEnded,
    RoomEvent,
    SecretRequested,
)
from roomsvc.domain.rooms import Capabilities, Participant
from roomsvc.errors import InvalidRequest
from roomsvc.transport.fields import b64


def decode(text: str) -> dict[str, Any]:
    """Parse one client message.

    Raises:
        InvalidRequest: not JSON, not an object, or no string ``type``.
    """
    value = strict_json.loads(text)
    if not isinstance(value, dict):
        raise InvalidRequest("a message must be a JSON object")
    kind = value.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequest("a message needs a string 'type'")
    request_id = value.get("id")
    if request_id is not None and not isinstance(request_id, (str, int)):
        raise InvalidRequest("'id' must be a string or an integer")
    data = value.get("data", {})
    if not isinstance(data, dict):
        raise InvalidRequest("'data' must be an object")
    return value


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


# -- encoded once per event, not once per receiver (issue 12) --------------------------------
#
# A fan-out hands one event object to every receiver in turn, so a one-entry cache keyed by
# the object's identity encodes it once and queues the same string for each. Only room
# events are cached (messages, calls, presence: what every receiver may see), never a
# notice; the entry holds the last such event until the next one replaces it.

_last_event: object = None
_last_text: str | None = None


def event_text(event: RoomEvent) -> str | None:
    """``encode(event_frame(event))``, computed once for consecutive deliveries of one event."""
    global _last_event, _last_text
    if isinstance(event, Notice):
        return encode(notice_frame(event))
    if event is _last_event:
        return _last_text
    frame = event_frame(event)
    text = None if frame is None else encode(frame)
    _last_event, _last_text = event, text
    return text


_last_presence: object = None
_last_participant: str = ""


def participant_json(event: ParticipantJoined | ParticipantLeft | ParticipantUpdated) -> str:
    """The announced participant as JSON, computed once for consecutive deliveries of one event."""
    global _last_presence, _last_participant
    if event is not _last_presence:
        _last_presence, _last_participant = event, encode(event.participant.as_dict())
    return _last_participant


#: a present participant's JSON (as in ``welcome``), kept while its attributes are the same
#: object (every change assigns a new dict): a welcome lists everyone present, and 2,000
#: joins would otherwise encode two million entries
_present_json: weakref.WeakKeyDictionary[Participant, tuple[object, str]] = weakref.WeakKeyDictionary()


def present_json(participant: Participant) -> str:
    cached = _present_json.get(participant)
    if cached is not None and cached[0] is participant.attributes:
        return cached[1]
    text = encode(participant.info().as_dict())
    _present_json[participant] = (participant.attributes, text)
    return text


def welcome_text(me: Participant, others: list[Participant], grants: dict[str, Any]) -> str:
    """The ``welcome`` frame (docs/protocol.md), the others' entries from :func:`present_json`."""
    head = encode({"room": me.room, "participant": me.info().as_dict()})[:-1]
    tail = encode({"grants": grants, "protocol": 1})[1:]
    listed = ",".join(present_json(p) for p in others)
    return f'{{"type":"welcome","data":{head},"participants":[{listed}],{tail}}}'


def presence_frame(kind: str, participant: str) -> str:
    """``participant.joined`` / ``updated`` / ``left`` from the participant's JSON (same bytes
    as ``encode(event_frame(event))``)."""
    return f'{{"type":"participant.{kind}","data":{participant}}}'


def changed_frame(joined: list[str], updated: list[str], left: list[str]) -> str:
    """Coalesced presence: ``participants.changed`` with the three lists (apply in that order)."""
    return (f'{{"type":"participants.changed","data":{{"joined":[{",".join(joined)}],'
            f'"updated":[{",".join(updated)}],"left":[{",".join(left)}]}}}}')


#: what a native client declares at join: a consent request reaches it as a start link
#: that a person opens (roomsvc runs the redirect)
CAPABILITIES = Capabilities(runs_own_redirect=False)


def event_frame(event: RoomEvent) -> dict[str, Any] | None:
    """A room event as a native push (``{"type": ..., "data": {...}}``)."""
    if isinstance(event, ParticipantJoined):
        return {"type": "participant.joined", "data": event.participant.as_dict()}
    if isinstance(event, ParticipantLeft):
        return {"type": "participant.left", "data": event.participant.as_dict()}
    if isinstance(event, ParticipantUpdated):
        return {"type": "participant.updated", "data": event.participant.as_dict()}
    if isinstance(event, MessageReceived):
        return {
            "type": "message",
            "data": {
                "from": event.sender.as_dict(),
                "message_type": event.message_type,
                "body": event.body,
                "attachment": b64(event.attachment),
                "broadcast": event.broadcast,
            },
        }
    if isinstance(event, CallReceived):
        return {
            "type": "call",
            "data": {"call_id": event.call_id, "from": event.sender.as_dict(), "method": event.method, "body": event.body},
        }
    if isinstance(event, Notice):
        return notice_frame(event)
    return None


def notice_frame(notice: Notice) -> dict[str, Any]:
    """A notice as a native push (docs/protocol.md)."""
    if isinstance(notice, SecretRequested):
        return {"type": "secrets.request_secret", "data": {
            "request_id": notice.request_id,
            "request": {
                "url": notice.url, "type": notice.type, "participant_id": notice.participant_id,
                "timeout": notice.timeout, "delegate_to": notice.delegate_to,
            },
            "from": notice.requester.as_dict(),
            "owner": notice.owner,
            "usable_by": list(notice.usable_by),
        }}
    if isinstance(notice, OAuthConsentRequested):
        data: dict[str, Any] = {
            "request_id": notice.request_id,
            "request": {
                "connector": notice.connector, "oauth": dict(notice.oauth), "participant_id": notice.participant_id,
                "timeout": notice.timeout, "delegate_to": notice.delegate_to, "redirect_uri": notice.redirect_uri,
            },
            "from": notice.requester.as_dict(),
            "expires_at": notice.expires_at,
            "owner": notice.owner,
            "usable_by": list(notice.usable_by),
        }
        if notice.by_app:
            data["challenge"] = notice.challenge
        else:
            data["start_url"] = notice.start_url
        return {"type": "secrets.request_oauth_token", "data": data}
    if isinstance(notice, RequestEnded):
        return {"type": "secrets.request_ended", "data": {"request_id": notice.request_id, "outcome": notice.outcome}}
    if isinstance(notice, CredentialNeedsReauth):
        return {"type": "secrets.oauth_reauth_required", "data": {
            "id": notice.id, "connector": notice.connector, "subject": notice.subject, "reason": notice.reason,
        }}
    assert_never(notice)
