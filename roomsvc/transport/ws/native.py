"""The native websocket protocol: JSON text frames at ``/v1/rooms/{room}/ws``.

See ``docs/protocol.md`` for the messages. The handler authenticates (header, query
parameter or a first ``auth`` message), joins the room, then reads frames and runs
each request as its own task; replies carry the request ``id``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from typing import Any, Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from roomsvc.domain.principal import Principal
from roomsvc.domain.rooms import Participant
from roomsvc.domain.services import Services
from roomsvc.errors import InvalidRequest, Overloaded, RoomsvcError, Unauthenticated
from roomsvc.transport.errors import error_body, wire_error
from roomsvc.transport.metrics import Metrics
from roomsvc.transport.ws import codec
from roomsvc.transport.ws.connection import Connection
from roomsvc.transport.ws.lifecycle import CLOSE_UNAUTHENTICATED, session_refusal, watch_session
from roomsvc.transport.ws.ops import OPS, Context
from roomsvc.transport.ws import header_ops  # noqa: F401  (registers headers.resolve)
from roomsvc.transport.ws import oauth_ops  # noqa: F401  (registers the secrets.* OAuth and request ops)

log = logging.getLogger("roomsvc.ws")

CLOSE_AUTH_TIMEOUT = 4008


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.query.get("token") or None


class NativeHandler:
    def __init__(self, services: Services, metrics: Metrics, connections: set[Connection]) -> None:
        self.s = services
        self.metrics = metrics
        self.connections = connections
        #: sockets upgraded without a token, still waiting for their auth message
        self.unauthenticated = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        room = request.match_info["room"]
        token = bearer_token(request)
        principal: Principal | None = None
        if token is not None:
            # a token sent with the upgrade is checked before upgrading, so a bad one
            # gets a plain HTTP error and never a socket
            try:
                principal = self._admit(token, room)
            except RoomsvcError as exc:
                self.metrics.errors.labels(str(wire_error(exc).code)).inc()
                return web.json_response({"error": error_body(exc)}, status=wire_error(exc).status)
        limits = self.s.ws
        if principal is None and self.unauthenticated >= limits.max_unauthenticated:
            busy = Overloaded(
                f"too many sockets waiting to authenticate (websocket.max_unauthenticated = {limits.max_unauthenticated}); "
                "send the token with the upgrade or try again later"
            )
            self.metrics.errors.labels(str(wire_error(busy).code)).inc()
            return web.json_response({"error": error_body(busy)}, status=wire_error(busy).status)
        ws = web.WebSocketResponse(
            heartbeat=limits.heartbeat or None,
            max_msg_size=limits.max_message_size,
            autoping=True,
        )
        pending_auth = principal is None
        if pending_auth:
            self.unauthenticated += 1  # counted before the first await: no race past the cap
        try:
            await ws.prepare(request)
        except BaseException:
            if pending_auth:
                self.unauthenticated -= 1
            raise
        conn = Connection(
            ws,
            max_queue=limits.outbound_queue,
            send_timeout=limits.send_timeout,
            max_concurrent=limits.max_concurrent_requests,
            encoder=_encode_event,
            transport=request.transport,
        )
        conn.start()
        self.connections.add(conn)
        self.metrics.connections.labels("native").inc()
        participant: Participant | None = None
        try:
            if principal is None:
                try:
                    principal = await self._auth_message(conn, room)
                finally:
                    pending_auth = False
                    self.unauthenticated -= 1
                if principal is None:
                    return ws
            conn.principal = principal  # from here a revocation closes the socket
            try:
                participant = await self.s.rooms.join(principal, conn, protocol="native", capabilities=codec.CAPABILITIES)
            except RoomsvcError as exc:
                await self._close_for(conn, exc)
                return ws
            watch_session(self.s, conn, principal)
            self._update_presence_metrics()
            conn.send_nowait(codec.encode({"type": "welcome", "data": _welcome(self.s, participant)}))
            await self._read_loop(conn, Context(self.s, participant, conn))
        finally:
            if pending_auth:  # the handler ended (cancelled) during the auth phase
                self.unauthenticated -= 1
            if participant is not None:
                await self.s.rooms.leave(participant)
                self._update_presence_metrics()
            await conn.stop()
            if not ws.closed:
                await conn.close(WSCloseCode.OK)
            self.connections.discard(conn)
            self.metrics.connections.labels("native").dec()
            if conn.close_code:
                self.metrics.closes.labels(str(conn.close_code)).inc()
        return ws

    # -- authentication ---------------------------------------------------------------

    def _admit(self, token: str, room: str) -> Principal:
        principal = self.s.authenticate(token)
        principal.require_room(room)
        return principal

    async def _auth_message(self, conn: Connection, room: str) -> Principal | None:
        """Browsers cannot set headers: they send ``{"type": "auth", "token": ...}`` first.

        One deadline for the whole phase: ``receive(timeout=...)`` would restart its timer
        at every ping or pong the client sends, so a client pinging forever would hold a
        socket without ever authenticating.
        """
        try:
            msg = await asyncio.wait_for(conn.ws.receive(), timeout=self.s.ws.auth_timeout)
        except asyncio.TimeoutError:
            await conn.close(CLOSE_AUTH_TIMEOUT, "no auth message in time")
            return None
        if msg.type != WSMsgType.TEXT:
            await self._close_after(conn, msg)
            return None
        try:
            frame = codec.decode(msg.data)
            if frame["type"] != "auth":
                raise Unauthenticated("the first message must be {'type': 'auth', 'token': ...}")
            token = frame.get("token", frame.get("data", {}).get("token"))
            if not isinstance(token, str):
                raise Unauthenticated("the auth message needs a 'token'")
            return self._admit(token, room)
        except InvalidRequest as exc:
            await self._close_for(conn, Unauthenticated(exc.message))
        except RoomsvcError as exc:
            await self._close_for(conn, exc)
        return None

    async def _close_for(self, conn: Connection, exc: RoomsvcError) -> None:
        self.metrics.errors.labels(str(wire_error(exc).code)).inc()
        await conn.close(wire_error(exc).close, exc.message)

    async def _close_after(self, conn: Connection, msg: Any) -> None:
        if msg.type == WSMsgType.BINARY:
            await conn.close(WSCloseCode.UNSUPPORTED_DATA, "binary frames are not part of the native protocol")

    # -- the read loop ------------------------------------------------------------------

    async def _read_loop(self, conn: Connection, ctx: Context) -> None:
        strikes = 0
        async for msg in conn.ws:
            if msg.type == WSMsgType.BINARY:
                await conn.close(WSCloseCode.UNSUPPORTED_DATA, "binary frames are not part of the native protocol")
                return
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                frame = codec.decode(msg.data)
            except InvalidRequest as exc:
                strikes += 1
                self._reply_error(conn, None, exc)
                if strikes >= self.s.ws.max_bad_messages:
                    await conn.close(WSCloseCode.POLICY_VIOLATION, "too many invalid messages")
                    return
                continue
            kind, request_id = frame["type"], frame.get("id")
            refusal = session_refusal(self.s, ctx.participant.principal)
            if refusal is not None:  # expired or revoked since the last request
                self._reply_error(conn, request_id, refusal)
                await conn.close(CLOSE_UNAUTHENTICATED, refusal.message)
                return
            op = OPS.get(kind)
            self.metrics.messages.labels("native", kind if op else "unknown").inc()
            if op is None:
                strikes += 1
                self._reply_error(conn, request_id, InvalidRequest(f"unknown message type {kind[:60]!r}"))
                if strikes >= self.s.ws.max_bad_messages:
                    await conn.close(WSCloseCode.POLICY_VIOLATION, "too many invalid messages")
                    return
                continue
            # partial binds this message's values now: the work runs after the loop moved on
            conn.spawn(
                functools.partial(self._run, conn, ctx, op, frame, request_id),
                functools.partial(self._overloaded, conn, request_id),
            )
        if conn.ws.exception() is not None:
            log.info("websocket closed with error: %s", type(conn.ws.exception()).__name__)

    async def _run(
        self,
        conn: Connection,
        ctx: Context,
        op: Callable[[Context, dict[str, Any]], Awaitable[Any]],
        frame: dict[str, Any],
        request_id: Any,
    ) -> None:
        try:
            result = await op(ctx, frame.get("data", {}))
        except RoomsvcError as exc:
            self._reply_error(conn, request_id, exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            incident = secrets.token_hex(4)
            log.exception("request %s failed (incident %s)", frame.get("type"), incident)
            self._reply_error(conn, request_id, _Internal(f"internal error (incident {incident})"))
            return
        if request_id is not None:
            conn.send_nowait(codec.encode({"type": "response", "id": request_id, "ok": True, "data": result or {}}))

    def _overloaded(self, conn: Connection, request_id: Any) -> None:
        self._reply_error(conn, request_id, Overloaded(f"more than {self.s.ws.max_concurrent_requests} requests in flight"))

    def _reply_error(self, conn: Connection, request_id: Any, exc: RoomsvcError) -> None:
        self.metrics.errors.labels(str(wire_error(exc).code)).inc()
        frame = {"type": "response" if request_id is not None else "error", "ok": False, "error": error_body(exc)}
        if request_id is not None:
            frame["id"] = request_id
        conn.send_nowait(codec.encode(frame))

    def _update_presence_metrics(self) -> None:
        rooms, participants = self.s.rooms.present_count()
        self.metrics.rooms.set(rooms)
        self.metrics.participants.set(participants)


class _Internal(RoomsvcError):
    name = "internal_error"


def _encode_event(event: Any) -> list[str]:
    frame = codec.event_frame(event)
    return [codec.encode(frame)] if frame is not None else []


def _welcome(services: Services, participant: Participant) -> dict[str, Any]:
    return {
        "room": participant.room,
        "participant": participant.info().as_dict(),
        "participants": [p.info().as_dict() for p in services.rooms.participants(participant.room) if p is not participant],
        "grants": {"api": sorted(participant.principal.api)},
        "protocol": 1,
    }

