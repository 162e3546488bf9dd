"""The MeshAgent-compatible protocol at ``/rooms/{room}`` (docs/meshagent.md), a codec of
the :mod:`~roomsvc.transport.ws.endpoint`.

What differs from the native protocol:

* **Admission.** The token must come with the upgrade, as ``Authorization: Bearer``
  (SDK 0.43+) or the ``token`` query parameter (older SDKs), and the participant joins
  the room *before* the upgrade, so every refusal is a plain HTTP answer. A bad,
  expired or wrong-room token is 403 even where roomsvc would say 401: the SDK retries
  a 401 forever and gives up at once on 403/404.
* **Greeting.** ``room_ready`` then ``connected`` (``type: init``); the SDK waits for both.
* **Frames.** Binary packets are reassembled (:mod:`.framing`) and unpacked
  (:mod:`.packing`); ``room.invoke_tool`` and the Gen-1 types run the tool of
  :data:`~.tools.TOOLS`, and the reply is a ``__response__`` with the request's message
  id. A ``__response__`` from the client (an answer to a push) is never answered;
  ``set_attributes`` is one-way.

All output goes through the connection's single writer, so packets never interleave.
"""

from __future__ import annotations

import functools
import logging
import secrets
from typing import Any

from aiohttp import WSMsgType

from roomsvc.domain.principal import Principal
from roomsvc.domain.services import Services
from roomsvc.errors import (
    FramingError,
    InvalidRequest,
    MessageTooLarge,
    NotFound,
    PermissionDenied,
    RoomsvcError,
    Unauthenticated,
)
from roomsvc.transport.errors import wire_error
from roomsvc.transport.fields import req_str
from roomsvc.transport.meshagent import messaging_tools, notices, oauth_tools, secrets_tools  # noqa: F401  (tools register)
from roomsvc.transport.meshagent.framing import MAX_FRAME, Message, PacketAssembler, packet_count
from roomsvc.transport.meshagent.hosted_tools import hosted_tool  # issue 17
from roomsvc.transport.meshagent.packing import ErrorContent, parse_content, unpack
from roomsvc.transport.meshagent.session import PROTOCOL, RESPONSE, MeshAgentSession, SessionRegistry, room_ws_url
from roomsvc.transport.meshagent.tools import GEN1_TYPES, TOOLS, ToolContext, gen1_content
from roomsvc.transport.ws.connection import Connection
from roomsvc.transport.ws.endpoint import Inbound, Request, Unusable, WsLimits

log = logging.getLogger("roomsvc.meshagent")

INVOKE = "room.invoke_tool"
SET_ATTRIBUTES = "set_attributes"
#: aiohttp checks a frame's size on the wire, before decompression: a 1036-byte packet
#: of random bytes grows a little under permessage-deflate (which the SDK offers), so
#: allow headroom here; the assembler checks the real packet sizes
MAX_WIRE_FRAME = 4 * MAX_FRAME


class MeshAgentCodec:
    name = PROTOCOL
    frames = WSMsgType.BINARY
    wrong_frames = "the MeshAgent protocol uses binary frames only"
    auth_message = False
    join_before_upgrade = True
    capabilities = notices.CAPABILITIES

    def __init__(self) -> None:
        self.sessions = SessionRegistry()

    def max_frame(self, limits: WsLimits) -> int:
        return MAX_WIRE_FRAME

    def max_queue(self, limits: WsLimits) -> int:
        # the queue holds packets: room for outbound_queue messages of the largest size,
        # the same memory bound as the native protocol's outbound_queue frames
        return limits.outbound_queue * (packet_count(limits.max_message_size) + 1)

    def refusal_status(self, error: RoomsvcError) -> int:
        return 403 if isinstance(error, (Unauthenticated, PermissionDenied)) else wire_error(error).status

    def auth_token(self, data: Any) -> str:
        raise Unauthenticated("the MeshAgent protocol takes the token with the upgrade")

    def join_attributes(self, principal: Principal) -> dict[str, Any]:
        return {"name": principal.identity}

    def session(self, services: Services, limits: WsLimits, conn: Connection) -> MeshAgentConnection:
        return MeshAgentConnection(services, limits, conn, self.sessions)


class MeshAgentConnection(MeshAgentSession):
    """A :class:`MeshAgentSession` (the room's view) that also translates its frames."""

    def __init__(self, services: Services, limits: WsLimits, conn: Connection, registry: SessionRegistry) -> None:
        super().__init__(services, conn, registry)
        self.limits = limits
        self._assembler = PacketAssembler(max_payload=limits.max_message_size)

    def greet(self) -> None:
        self.registry.add(self)
        me = self.me
        self.push("room_ready", {"room_name": me.room, "room_url": room_ws_url(self.services.public_url(), me.room),
                                 "session_id": secrets.token_hex(8)})
        self.push("connected", {"type": "init", "participantId": me.id,
                                "attributes": {**me.attributes, "name": me.identity}})

    def close(self) -> None:
        self.registry.remove(self)

    def decode(self, data: Any) -> Inbound | None:
        try:
            message = self._assembler.feed(data)
        except MessageTooLarge as exc:  # a well-formed request over the limit: answered, no strike
            raise Unusable(exc, exc.message_id, strike=False) from None
        except FramingError as exc:  # nothing whole to answer
            log.info("invalid MeshAgent packet: %s", exc.message)
            raise Unusable(exc, answered=False) from None
        if message is None:
            return None
        return Inbound(message.id, message, answered=message.type != RESPONSE)

    def route(self, inbound: Inbound) -> Request:
        message: Message = inbound.message
        try:
            return self._route(message)
        except InvalidRequest as exc:
            log.info("invalid MeshAgent message: %s", exc.message)
            raise Unusable(exc, message.id) from None

    def _route(self, message: Message) -> Request:
        """The tool a message calls, bound to its content.

        Raises:
            InvalidRequest: a malformed or unknown message (a strike).
            Unusable: a request refused without a strike.
        """
        if message.type == RESPONSE:
            # a client answering a push (the SDK does not, other clients may): nothing
            # here waits for one, and answering an answer could ping-pong, so drop it
            return Request(message.id, RESPONSE)
        header, trailer = unpack(message.payload)
        if message.type == SET_ATTRIBUTES:  # one-way: the SDK expects no answer
            try:
                self.services.rooms.set_attributes(self.me, header)
            except RoomsvcError as exc:
                raise Unusable(exc, message.id, strike=False, kind=SET_ATTRIBUTES) from None
            return Request(message.id, SET_ATTRIBUTES)
        if message.type == INVOKE:
            key = (req_str(header, "toolkit"), req_str(header, "tool"))
            arguments = header.get("arguments", {"type": "empty"})
            if not isinstance(arguments, dict):
                raise InvalidRequest("'arguments' must be a content header object")
            content = parse_content(arguments, trailer)
            if header.get("participant_id"):  # a toolkit another participant hosts (issue 17: the MCP bridge)
                hosted = ToolContext(self.services, self, message.id, self.limits)
                run = functools.partial(hosted_tool, hosted, req_str(header, "participant_id"), key[0], key[1], content)
                return Request(message.id, INVOKE, run)
        elif message.type in GEN1_TYPES:
            key, content = GEN1_TYPES[message.type], gen1_content(header, trailer)
        else:
            unknown = InvalidRequest(f"unknown message type {message.type[:60]!r}")
            log.info("invalid MeshAgent message: %s", unknown.message)
            raise Unusable(unknown, message.id, kind="unknown")
        tool = TOOLS.get(key)
        if tool is None:
            missing = NotFound(f"toolkit {key[0][:40]!r} has no tool {key[1][:40]!r} here")
            raise Unusable(missing, message.id, strike=False, kind="unknown")
        ctx = ToolContext(self.services, self, message.id, self.limits)
        return Request(message.id, ".".join(key), functools.partial(tool, ctx, content))

    def reply(self, reply_to: Any, result: Any) -> None:
        if result is not None:
            super().reply(reply_to, result)

    def reply_error(self, reply_to: Any, error: RoomsvcError) -> None:
        super().reply(reply_to, ErrorContent(error.message, wire_error(error).code))
