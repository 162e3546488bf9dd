"""The native protocol's JSON codec: strict parsing in, frames out.

Incoming text frames must hold one JSON object with a string ``type``, parsed strictly
(:mod:`roomsvc.transport.strict_json`).
"""

from __future__ import annotations

import json
from typing import Any

from roomsvc.domain.events import (
    CallReceived,
    MessageReceived,
    Notice,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    RoomEvent,
)
from roomsvc.errors import InvalidRequest
from roomsvc.transport import strict_json
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
        data = dict(event.data)
        if event.attachment is not None:
            data["attachment"] = b64(event.attachment)
        return {"type": event.kind, "data": data}
    return None
