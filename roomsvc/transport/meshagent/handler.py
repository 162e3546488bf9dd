"""The MeshAgent-compatible websocket endpoint ``/rooms/{room}`` (docs/meshagent.md).

The life of a connection:

1. **Upgrade.** The token comes from ``Authorization: Bearer`` (SDK 0.43+) or the
   ``token`` query parameter (older SDKs). It is checked, and the participant joins the
   room, *before* the upgrade, so every refusal is a plain HTTP answer. A bad, expired or
   wrong-room token is 403 even where roomsvc would say 401: the SDK retries a 401 forever
   and gives up at once on 403/404.
2. **Handshake.** ``room_ready`` then ``connected`` (``type: init``); the SDK waits for both.
3. **Requests.** Binary packets are reassembled (:mod:`.framing`) and unpacked
   (:mod:`.packing`); ``room.invoke_tool`` and the Gen-1 types run the tool of
   :data:`~.tools.TOOLS` as a task of their own (at most ``max_concurrent_requests``), and
   the reply is a ``__response__`` with the request's message id. A ``__response__``
   from the client (an answer to a push) is ignored. Each message re-checks the token
   first (expired or revoked: answered with the error, then closed with 4001).
4. **Leave** when the socket closes (the SDK sends no goodbye). The server closes it
   with 4001 when the token expires (``exp`` + ``tokens.leeway``) or is revoked.

All output goes through the connection's single writer, so packets never interleave.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from aiohttp import WSCloseCode, WSMsgType, web

from roomsvc.domain.principal import Principal
from roomsvc.domain.services import Services
from roomsvc.errors import InvalidRequest, NotFound, Overloaded, PermissionDenied, RoomsvcError, Unauthenticated
from roomsvc.transport.errors import error_body, wire_error
from roomsvc.transport.meshagent import messaging_tools, oauth_tools, secrets_tools  # noqa: F401  (register their tools)
from roomsvc.transport.meshagent.framing import (
    MAX_FRAME,
    FramingError,
    Message,
    MessageTooLarge,
    PacketAssembler,
    packet_count,
)
from roomsvc.transport.meshagent import notices
from roomsvc.transport.meshagent.packing import Content, ErrorContent, parse_content, unpack
from roomsvc.transport.meshagent.session import PROTOCOL, RESPONSE, MeshAgentSession, SessionRegistry, room_ws_url
from roomsvc.transport.meshagent.tools import GEN1_TYPES, TOOLS, Tool, ToolContext, gen1_content, req_str
from roomsvc.transport.metrics import Metrics
from roomsvc.transport.ws.connection import Connection
from roomsvc.transport.ws.lifecycle import CLOSE_UNAUTHENTICATED, session_refusal, watch_session
from roomsvc.transport.ws.native import bearer_token

log = logging.getLogger("roomsvc.meshagent")

INVOKE = "room.invoke_tool"
SET_ATTRIBUTES = "set_attributes"
#: aiohttp checks a frame's size on the wire, before decompression: a 1036-byte packet
#: of random bytes grows a little under permessage-deflate (which the SDK offers), so
#: allow headroom here; the assembler checks the real packet sizes
MAX_WIRE_FRAME = 4 * MAX_FRAME


class MeshAgentHandler:
    def __init__(self, services: Services, metrics: Metrics, connections: set[Connection]) -> None:
        self.s = services
        self.metrics = metrics
        self.connections = connections
        self.sessions = SessionRegistry()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        try:
            session = await self._join(request)
        except RoomsvcError as exc:
            return self._refuse(exc)
        ws = session.conn.ws
        try:
            await ws.prepare(request)
            session.conn.start()
            # from here the socket is closed (4001) when the token expires or is revoked
            watch_session(self.s, session.conn, session.me.principal)
            await self._read_loop(session)
        finally:
            await self._leave(session)
        return ws

    # -- upgrade and handshake -------------------------------------------------------------

    async def _join(self, request: web.Request) -> MeshAgentSession:
        """Authenticate and join before upgrading; queue the handshake.

        Raises:
            RoomsvcError: any refusal, answered as plain HTTP by :meth:`_refuse`.
        """
        limits = self.s.ws
        ws = web.WebSocketResponse(heartbeat=limits.heartbeat or None, max_msg_size=MAX_WIRE_FRAME, autoping=True)
        principal = self._admit(bearer_token(request), request.match_info["room"])
        if not ws.can_prepare(request).ok:
            raise InvalidRequest("this endpoint takes a websocket upgrade")
        conn = Connection(
            ws,
            # the queue holds packets: room for outbound_queue messages of the largest size,
            # the same memory bound as the native protocol's outbound_queue frames
            max_queue=limits.outbound_queue * (packet_count(limits.max_message_size) + 1),
            send_timeout=limits.send_timeout,
            max_concurrent=limits.max_concurrent_requests,
            transport=request.transport,
        )
        session = MeshAgentSession(self.s, conn, self.sessions)
        session.participant = await self.s.rooms.join(
            principal, session, attributes={"name": principal.identity}, protocol=PROTOCOL, capabilities=notices.CAPABILITIES
        )
        self.sessions.add(session)
        self._handshake(session)  # queued now, written once the socket is up
        self.connections.add(conn)
        self.metrics.connections.labels(PROTOCOL).inc()
        self._update_presence_metrics()
        return session

    async def _leave(self, session: MeshAgentSession) -> None:
        conn = session.conn
        self.sessions.remove(session)
        await self.s.rooms.leave(session.me)
        self._update_presence_metrics()
        await conn.stop()
        if conn.ws.prepared and not conn.ws.closed:
            await conn.close(WSCloseCode.OK)
        self.connections.discard(conn)
        self.metrics.connections.labels(PROTOCOL).dec()
        if conn.close_code:
            self.metrics.closes.labels(str(conn.close_code)).inc()

    def _admit(self, token: str | None, room: str) -> Principal:
        if token is None:
            raise Unauthenticated("send a participant token as 'Authorization: Bearer <token>' or ?token=")
        principal = self.s.authenticate(token)
        principal.require_room(room)
        return principal

    def _refuse(self, exc: RoomsvcError) -> web.Response:
        self.metrics.errors.labels(str(wire_error(exc).code)).inc()
        status = 403 if isinstance(exc, (Unauthenticated, PermissionDenied)) else wire_error(exc).status
        return web.json_response({"error": error_body(exc)}, status=status)

    def _handshake(self, session: MeshAgentSession) -> None:
        me = session.me
        session.push("room_ready", {"room_name": me.room, "room_url": room_ws_url(self.s.public_url(), me.room),
                                    "session_id": secrets.token_hex(8)})
        session.push("connected", {"type": "init", "participantId": me.id,
                                   "attributes": {**me.attributes, "name": me.identity}})

    # -- the read loop ---------------------------------------------------------------------

    async def _read_loop(self, session: MeshAgentSession) -> None:
        conn = session.conn
        assembler = PacketAssembler(max_payload=self.s.ws.max_message_size)
        strikes = 0
        async for msg in conn.ws:
            if msg.type == WSMsgType.TEXT:
                await conn.close(WSCloseCode.UNSUPPORTED_DATA, "the MeshAgent protocol uses binary frames only")
                return
            if msg.type != WSMsgType.BINARY:
                continue
            try:
                message = assembler.feed(msg.data)
            except MessageTooLarge as exc:  # a well-formed request over the limit: answered, no strike
                self._reply_error(session, exc.message_id, exc)
                continue
            except FramingError as exc:  # nothing whole to answer
                log.info("invalid MeshAgent packet: %s", exc.message)
            else:
                if message is not None and not await self._still_valid(session, message):
                    return
                if message is None or self._dispatch(session, message):
                    continue
            strikes += 1
            if strikes >= self.s.ws.max_bad_messages:
                await conn.close(WSCloseCode.POLICY_VIOLATION, "too many invalid messages")
                return
        if conn.ws.exception() is not None:
            log.info("websocket closed with error: %s", type(conn.ws.exception()).__name__)

    async def _still_valid(self, session: MeshAgentSession, message: Message) -> bool:
        """Each request re-checks the token (expired or revoked since the last one):
        refused, the request is answered with the error and the socket closed (4001)."""
        refusal = session_refusal(self.s, session.me.principal)
        if refusal is None:
            return True
        if message.type != RESPONSE:
            self._reply_error(session, message.id, refusal)
        await session.conn.close(CLOSE_UNAUTHENTICATED, refusal.message)
        return False

    def _dispatch(self, session: MeshAgentSession, message: Message) -> bool:
        """Route one message; False (after answering it) when it is malformed or unknown."""
        try:
            self._route(session, message)
        except InvalidRequest as exc:
            log.info("invalid MeshAgent message: %s", exc.message)
            self._reply_error(session, message.id, exc)
            return False
        return True

    def _route(self, session: MeshAgentSession, message: Message) -> None:
        """Run a message's tool as a task of its own, so a slow one holds up no other.

        Raises:
            InvalidRequest: a malformed or unknown message.
        """
        if message.type == RESPONSE:
            # a client answering a push (the SDK does not, other clients may): nothing
            # here waits for one, and answering an answer could ping-pong, so drop it
            self.metrics.messages.labels(PROTOCOL, RESPONSE).inc()
            return
        header, trailer = unpack(message.payload)
        if message.type == SET_ATTRIBUTES:  # one-way: the SDK expects no answer
            self.metrics.messages.labels(PROTOCOL, message.type).inc()
            try:
                self.s.rooms.set_attributes(session.me, header)
            except RoomsvcError as exc:
                self._reply_error(session, message.id, exc)
            return
        if message.type == INVOKE:
            key = (req_str(header, "toolkit"), req_str(header, "tool"))
            if header.get("participant_id"):  # a toolkit another participant hosts
                self._reply_error(session, message.id, NotFound("toolkits hosted by participants are not supported here"))
                return
            arguments = header.get("arguments", {"type": "empty"})
            if not isinstance(arguments, dict):
                raise InvalidRequest("'arguments' must be a content header object")
            content = parse_content(arguments, trailer)
        elif message.type in GEN1_TYPES:
            key, content = GEN1_TYPES[message.type], gen1_content(header, trailer)
        else:
            self.metrics.messages.labels(PROTOCOL, "unknown").inc()
            raise InvalidRequest(f"unknown message type {message.type[:60]!r}")
        tool = TOOLS.get(key)
        self.metrics.messages.labels(PROTOCOL, ".".join(key) if tool else "unknown").inc()
        if tool is None:
            self._reply_error(session, message.id, NotFound(f"toolkit {key[0][:40]!r} has no tool {key[1][:40]!r} here"))
            return
        session.conn.spawn(
            lambda: self._run(session, message.id, tool, content),
            lambda: self._reply_error(
                session, message.id, Overloaded(f"more than {self.s.ws.max_concurrent_requests} requests in flight")
            ),
        )

    async def _run(self, session: MeshAgentSession, message_id: int, tool: Tool, content: Content) -> None:
        try:
            result = await tool(ToolContext(self.s, session, message_id), content)
        except RoomsvcError as exc:
            self._reply_error(session, message_id, exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            incident = secrets.token_hex(4)
            log.exception("MeshAgent tool call failed (incident %s)", incident)
            self._reply_error(session, message_id, _Internal(f"internal error (incident {incident})"))
            return
        if result is not None:
            session.reply(message_id, result)

    def _reply_error(self, session: MeshAgentSession, message_id: int, exc: RoomsvcError) -> None:
        code = wire_error(exc).code
        self.metrics.errors.labels(str(code)).inc()
        session.reply(message_id, ErrorContent(exc.message, code))

    def _update_presence_metrics(self) -> None:
        rooms, participants = self.s.rooms.present_count()
        self.metrics.rooms.set(rooms)
        self.metrics.participants.set(participants)


class _Internal(RoomsvcError):
    name = "internal_error"
