"""The native websocket protocol: JSON text frames at ``/v1/rooms/{room}/ws``.

A codec of the :mod:`~roomsvc.transport.ws.endpoint`; see ``docs/protocol.md`` for the
messages. The token comes with the upgrade or in a first ``auth`` message (browsers
cannot set headers); a refused upgrade is answered with the error's own HTTP status,
and a join refused after the upgrade closes the socket with the error's close code.
The participant is greeted with ``welcome``; replies carry the request ``id``.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import WSMsgType

from roomsvc.domain.events import ParticipantJoined, ParticipantLeft, ParticipantUpdated, RoomEvent
from roomsvc.domain.principal import Principal
from roomsvc.domain.rooms import Participant
from roomsvc.domain.services import Services
from roomsvc.errors import InvalidRequest, RoomsvcError, Unauthenticated
from roomsvc.transport.errors import error_body, wire_error
from roomsvc.transport.ws import (
    codec,
    header_ops,  # noqa: F401  (registers headers.resolve)
    oauth_ops,  # noqa: F401  (registers the secrets.* OAuth and request ops)
)
from roomsvc.transport.ws.connection import Connection
from roomsvc.transport.ws.endpoint import Inbound, Request, Unusable, WsLimits
from roomsvc.transport.ws.ops import OPS, Context
from roomsvc.transport.ws.presence import PresenceBuffer

PROTOCOL = "native"


class NativeCodec:
    name = PROTOCOL
    frames = WSMsgType.TEXT
    wrong_frames = "binary frames are not part of the native protocol"
    auth_message = True
    join_before_upgrade = False
    capabilities = codec.CAPABILITIES

    def max_frame(self, limits: WsLimits) -> int:
        return limits.max_message_size

    def max_queue(self, limits: WsLimits) -> int:
        return limits.outbound_queue

    def refusal_status(self, error: RoomsvcError) -> int:
        return wire_error(error).status

    def auth_token(self, data: Any) -> str:
        frame = codec.decode(data)
        if frame["type"] != "auth":
            raise Unauthenticated("the first message must be {'type': 'auth', 'token': ...}")
        token = frame.get("token", frame.get("data", {}).get("token"))
        if not isinstance(token, str):
            raise Unauthenticated("the auth message needs a 'token'")
        return token

    def join_attributes(self, principal: Principal) -> None:
        return None

    def session(self, services: Services, limits: WsLimits, conn: Connection) -> NativeSession:
        return NativeSession(services, limits, conn)


class NativeSession:
    def __init__(self, services: Services, limits: WsLimits, conn: Connection) -> None:
        self.s = services
        self.limits = limits
        self.conn = conn
        self.participant: Participant | None = None
        self._ctx: Context | None = None
        self._presence = PresenceBuffer(limits.presence_coalesce, conn.send_nowait)

    def deliver(self, event: RoomEvent) -> None:
        if isinstance(event, (ParticipantJoined, ParticipantLeft, ParticipantUpdated)):
            self._presence.add(event)
            return
        text = codec.event_text(event)
        if text is not None:
            self._send(text)

    def _send(self, text: str) -> None:
        """Queue a frame after any presence still pending (never reordered)."""
        self._presence.flush()
        self.conn.send_nowait(text)

    def greet(self) -> None:
        assert self.participant is not None
        me = self.participant
        self._ctx = Context(self.s, me, self.conn, self.limits)
        others = [p for p in self.s.rooms.participants(me.room) if p is not me]
        self.conn.send_nowait(codec.welcome_text(me, others, {"api": sorted(me.principal.api)}))

    def close(self) -> None:
        self._presence.close()

    def decode(self, data: Any) -> Inbound:
        try:
            frame = codec.decode(data)
        except InvalidRequest as exc:
            raise Unusable(exc) from None
        return Inbound(frame.get("id"), frame)

    def route(self, inbound: Inbound) -> Request:
        kind: str = inbound.message["type"]
        op = OPS.get(kind)
        if op is None:
            raise Unusable(InvalidRequest(f"unknown message type {kind[:60]!r}"), inbound.reply_to, kind="unknown")
        assert self._ctx is not None
        return Request(inbound.reply_to, kind, functools.partial(op, self._ctx, inbound.message.get("data", {})))

    def reply(self, reply_to: Any, result: Any) -> None:
        if reply_to is not None:
            self._send(codec.encode({"type": "response", "id": reply_to, "ok": True, "data": result or {}}))

    def reply_error(self, reply_to: Any, error: RoomsvcError) -> None:
        frame = {"type": "response" if reply_to is not None else "error", "ok": False, "error": error_body(error)}
        if reply_to is not None:
            frame["id"] = reply_to
        self._send(codec.encode(frame))
