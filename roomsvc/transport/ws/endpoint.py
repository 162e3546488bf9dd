"""One websocket endpoint for every wire protocol; a protocol is a :class:`Codec`.

The endpoint owns the life of a connection, the same for the native protocol
(:mod:`roomsvc.transport.ws.native`) and the MeshAgent one
(:mod:`roomsvc.transport.meshagent.codec`):

1. **Admit.** The token comes with the upgrade (``Authorization: Bearer`` or
   ``?token=``) and is checked before upgrading, so a bad one gets a plain HTTP answer
   (the codec picks the status). A codec that takes an auth message lets a socket
   upgrade without one (at most ``websocket.max_unauthenticated`` at once) and read
   the token from the first frame within ``websocket.auth_timeout``.
2. **Join** the room, before the upgrade when the codec says so (every refusal is
   then plain HTTP), otherwise after it (a refusal closes the socket with its close
   code); the codec greets the participant.
3. **Requests.** Each data frame is decoded by the codec; each request re-checks the
   token (expired or revoked: answered with the error, then closed with 4001) and runs
   as a task of its own (at most ``max_concurrent_requests``). A failure nobody
   expected is answered with :class:`~roomsvc.errors.InternalError` and an incident
   id that the log line carries too. Bad messages are strikes; ``max_bad_messages``
   of them close the socket (1008).
4. **Leave** when the socket closes. The server closes it with 4001 when the token
   expires (``exp`` + ``tokens.leeway``, a timer per connection, no polling) or at once
   when an operator revokes it (:func:`close_revoked`).

A codec turns frames into requests and results into frames, and says how it admits,
greets and refuses; a third protocol is a codec and nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from roomsvc.config import WebsocketSettings
from roomsvc.domain.events import RoomEvent
from roomsvc.domain.principal import Principal
from roomsvc.domain.rooms import Capabilities, Participant
from roomsvc.domain.services import Services
from roomsvc.errors import InternalError, InvalidRequest, Overloaded, RoomsvcError, Unauthenticated
from roomsvc.transport.errors import error_body, wire_error
from roomsvc.transport.fields import bearer
from roomsvc.transport.metrics import Metrics
from roomsvc.transport.telemetry import Telemetry
from roomsvc.transport.ws.connection import Connection

log = logging.getLogger("roomsvc.ws")

#: the websocket limits, straight from ``[websocket]`` (the transport's own settings)
WsLimits = WebsocketSettings

CLOSE_UNAUTHENTICATED = 4001
CLOSE_AUTH_TIMEOUT = 4008


# -- what a codec hands the endpoint ---------------------------------------------------------


@dataclass(frozen=True)
class Inbound:
    """A whole message off the wire, not yet routed."""

    #: where its answers go (the codec's request id; None may still be answerable)
    reply_to: Any
    #: the codec's decoded message, for :meth:`ProtocolSession.route`
    message: Any
    #: False for a message that is never answered (e.g. a client's answer to a push)
    answered: bool = True


@dataclass(frozen=True)
class Request:
    """A routed message: ``run`` is the work, None when the codec did it already."""

    reply_to: Any
    #: the label on the messages metric (the op's name)
    kind: str
    run: Callable[[], Awaitable[Any]] | None = None


class Unusable(Exception):
    """A message the codec could not use: answered with ``error`` (if ``answered``) and,
    if ``strike``, counted towards ``max_bad_messages``."""

    def __init__(
        self, error: RoomsvcError, reply_to: Any = None, *, answered: bool = True, strike: bool = True, kind: str | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.reply_to = reply_to
        self.answered = answered
        self.strike = strike
        #: the label on the messages metric, if the message counts as one
        self.kind = kind


class ProtocolSession(Protocol):
    """One connection in one protocol: the participant's sink and the frame translator."""

    conn: Connection
    participant: Participant | None

    def deliver(self, event: RoomEvent) -> None: ...

    def greet(self) -> None:
        """The participant has joined: queue what the protocol sends first."""

    def close(self) -> None:
        """The connection ends (before the participant leaves the room)."""

    def decode(self, data: Any) -> Inbound | None:
        """One data frame; None while a message is incomplete.

        Raises:
            Unusable: frames that are not a message.
        """

    def route(self, inbound: Inbound) -> Request:
        """The request a whole message makes.

        Raises:
            Unusable: a malformed or unknown request.
        """

    def reply(self, reply_to: Any, result: Any) -> None: ...

    def reply_error(self, reply_to: Any, error: RoomsvcError) -> None: ...


class Codec(Protocol):
    #: the participant's ``protocol`` and the metrics label
    name: str
    #: the data frames of the protocol; the other kind closes the socket (1003)
    frames: WSMsgType
    #: the close reason for the other kind
    wrong_frames: str
    #: whether a socket may upgrade without a token and send it as its first message
    auth_message: bool
    #: whether the participant joins before the upgrade (every refusal is plain HTTP)
    join_before_upgrade: bool
    #: what its participants can do, set at join (how an OAuth consent reaches them)
    capabilities: Capabilities

    def max_frame(self, limits: WsLimits) -> int: ...

    def max_queue(self, limits: WsLimits) -> int: ...

    def refusal_status(self, error: RoomsvcError) -> int: ...

    def auth_token(self, data: Any) -> str:
        """The token of the first message (codecs with ``auth_message``).

        Raises:
            RoomsvcError: not an auth message (an InvalidRequest closes it as unauthenticated).
        """

    def session(self, services: Services, limits: WsLimits, conn: Connection) -> ProtocolSession: ...

    def join_attributes(self, principal: Principal) -> Mapping[str, Any] | None: ...


# -- the endpoint ----------------------------------------------------------------------------


class Endpoint:
    """The aiohttp handler of one protocol's websocket route."""

    def __init__(
        self, codec: Codec, services: Services, limits: WsLimits, metrics: Metrics, connections: set[Connection],
        *, telemetry: Telemetry | None = None,
    ) -> None:
        # -- telemetry (issue 18): bound once per endpoint, so the frame path does no label lookup
        self.telemetry = telemetry
        ops = telemetry.ops if telemetry is not None else None
        self._stats = ops.ws_stats(codec.name) if ops is not None else None
        self._frames_in = ops.ws_frames_received.labels(codec.name) if ops is not None else None
        #: operation -> its latency histogram child (filled as operations are first seen)
        self._durations: dict[str, Any] = {}
        self._ops = ops
        self._tracing = telemetry is not None and telemetry.tracing.enabled
        self.codec = codec
        self.s = services
        self.limits = limits
        self.metrics = metrics
        self.connections = connections
        #: sockets upgraded without a token, still waiting for their auth message
        self.unauthenticated = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        room = request.match_info["room"]
        limits = self.limits
        ws = web.WebSocketResponse(heartbeat=limits.heartbeat or None, max_msg_size=self.codec.max_frame(limits), autoping=True)
        conn = Connection(
            ws, max_queue=self.codec.max_queue(limits), send_timeout=limits.send_timeout,
            max_concurrent=limits.max_concurrent_requests, transport=request.transport, stats=self._stats,
        )
        session = self.codec.session(self.s, limits, conn)
        try:
            principal = self._admit_upgrade(request, room)
            if self.codec.join_before_upgrade and principal is not None:
                if not ws.can_prepare(request).ok:
                    raise InvalidRequest("this endpoint takes a websocket upgrade")
                await self._join(session, principal)
        except RoomsvcError as exc:
            return self._refuse(exc)
        waiting = principal is None
        if waiting:
            self.unauthenticated += 1  # counted before the first await: no race past the cap
        opened = False
        try:
            await ws.prepare(request)
            conn.start()
            self.connections.add(conn)
            self.metrics.connections.labels(self.codec.name).inc()
            opened = True
            if principal is None:
                try:
                    principal = await self._auth_message(conn, room)
                finally:
                    waiting = False
                    self.unauthenticated -= 1
                if principal is None:
                    return ws
            if session.participant is None:
                conn.principal = principal  # from here a revocation closes the socket
                try:
                    await self._join(session, principal)
                except RoomsvcError as exc:
                    await self._close_for(conn, exc)
                    return ws
            watch_session(self.s, conn, principal)
            await self._read_loop(session)
        finally:
            if waiting:  # the handler ended (cancelled) before the auth phase did
                self.unauthenticated -= 1
            await self._leave(session, opened)
        return ws

    # -- admission -----------------------------------------------------------------------------

    def _admit_upgrade(self, request: web.Request, room: str) -> Principal | None:
        """Who the upgrade's token names, or None for a socket that will send an auth message.

        Raises:
            RoomsvcError: a bad token, no token where one is needed, or too many sockets waiting.
        """
        token = bearer(request.headers.get("Authorization", "")) or request.query.get("token") or None
        if token is not None:
            return self._admit(token, room)
        if not self.codec.auth_message:
            raise Unauthenticated("send a participant token as 'Authorization: Bearer <token>' or ?token=")
        if self.unauthenticated >= self.limits.max_unauthenticated:
            raise Overloaded(
                f"too many sockets waiting to authenticate (websocket.max_unauthenticated = {self.limits.max_unauthenticated}); "
                "send the token with the upgrade or try again later"
            )
        return None

    def _admit(self, token: str, room: str) -> Principal:
        principal = self.s.authenticate(token)
        principal.require_room(room)
        return principal

    async def _auth_message(self, conn: Connection, room: str) -> Principal | None:
        """The token of the first message (browsers cannot set headers).

        One deadline for the whole phase: ``receive(timeout=...)`` would restart its timer
        at every ping or pong the client sends, so a client pinging forever would hold a
        socket without ever authenticating.
        """
        try:
            msg = await asyncio.wait_for(conn.ws.receive(), timeout=self.limits.auth_timeout)
        except asyncio.TimeoutError:
            await conn.close(CLOSE_AUTH_TIMEOUT, "no auth message in time")
            return None
        if msg.type != self.codec.frames:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await conn.close(WSCloseCode.UNSUPPORTED_DATA, self.codec.wrong_frames)
            return None
        try:
            return self._admit(self.codec.auth_token(msg.data), room)
        except InvalidRequest as exc:
            await self._close_for(conn, Unauthenticated(exc.message))
        except RoomsvcError as exc:
            await self._close_for(conn, exc)
        return None

    def _refuse(self, exc: RoomsvcError) -> web.Response:
        self._count_error(exc)
        return web.json_response({"error": error_body(exc)}, status=self.codec.refusal_status(exc))

    async def _close_for(self, conn: Connection, exc: RoomsvcError) -> None:
        self._count_error(exc)
        await conn.close(wire_error(exc).close, exc.message)

    # -- presence ------------------------------------------------------------------------------

    async def _join(self, session: ProtocolSession, principal: Principal) -> None:
        session.participant = await self.s.rooms.join(
            principal, session, attributes=self.codec.join_attributes(principal), protocol=self.codec.name,
            capabilities=self.codec.capabilities,
        )
        session.greet()  # queued now, written once the socket is up
        self._update_presence_metrics()

    async def _leave(self, session: ProtocolSession, opened: bool) -> None:
        conn = session.conn
        session.close()
        if session.participant is not None:
            await self.s.rooms.leave(session.participant)
            self._update_presence_metrics()
        await conn.stop()
        if conn.ws.prepared and not conn.ws.closed:
            await conn.close(WSCloseCode.OK)
        if opened:
            self.connections.discard(conn)
            self.metrics.connections.labels(self.codec.name).dec()
        if conn.close_code:
            self.metrics.closes.labels(str(conn.close_code)).inc()

    def _update_presence_metrics(self) -> None:
        rooms, participants = self.s.rooms.present_count()
        self.metrics.rooms.set(rooms)
        self.metrics.participants.set(participants)

    # -- requests ------------------------------------------------------------------------------

    async def _read_loop(self, session: ProtocolSession) -> None:
        conn = session.conn
        strikes = 0
        async for msg in conn.ws:
            if msg.type != self.codec.frames:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await conn.close(WSCloseCode.UNSUPPORTED_DATA, self.codec.wrong_frames)
                    return
                continue
            if self._frames_in is not None:
                self._frames_in.inc()
            try:
                inbound = session.decode(msg.data)
                if inbound is None:
                    continue
                refusal = session_refusal(self.s, conn.principal)
                if refusal is not None:  # expired or revoked since the last request
                    if inbound.answered:
                        self._reply_error(session, inbound.reply_to, refusal)
                    await conn.close(CLOSE_UNAUTHENTICATED, refusal.message)
                    return
                request = session.route(inbound)
            except Unusable as bad:
                if bad.kind is not None:
                    self.metrics.messages.labels(self.codec.name, bad.kind).inc()
                if bad.answered:
                    self._reply_error(session, bad.reply_to, bad.error)
                strikes += bad.strike
                if strikes >= self.limits.max_bad_messages:
                    await conn.close(WSCloseCode.POLICY_VIOLATION, "too many invalid messages")
                    return
                continue
            self.metrics.messages.labels(self.codec.name, request.kind).inc()
            if request.run is not None:
                # partial binds this message's values now: the work runs after the loop moved on
                conn.spawn(functools.partial(self._run, session, request), functools.partial(self._overloaded, session, request))
        if conn.ws.exception() is not None:
            log.info("websocket closed with error: %s", type(conn.ws.exception()).__name__)

    async def _run(self, session: ProtocolSession, request: Request) -> None:
        if self._ops is None and not self._tracing:
            await self._run_request(session, request)
            return
        began = time.perf_counter()
        try:
            if self._tracing:
                assert self.telemetry is not None
                participant = session.participant
                with self.telemetry.span(
                    f"ws {request.kind}", operation=request.kind, protocol=self.codec.name,
                    room=participant.room if participant is not None else "",
                ) as span:
                    failure = await self._run_request(session, request)
                    if failure is not None:
                        span.fail(failure)
            else:
                await self._run_request(session, request)
        finally:
            if self._ops is not None:
                child = self._durations.get(request.kind)
                if child is None:
                    child = self._durations[request.kind] = self._ops.ws_request_duration.labels(self.codec.name, request.kind)
                child.observe(time.perf_counter() - began)

    async def _run_request(self, session: ProtocolSession, request: Request) -> str | None:
        """Run and answer one request; the name of the error it was answered with, if any."""
        assert request.run is not None
        try:
            result = await request.run()
        except RoomsvcError as exc:
            self._reply_error(session, request.reply_to, exc)
            return exc.name
        except asyncio.CancelledError:
            raise
        except Exception:
            incident = secrets.token_hex(4)
            log.exception(
                "%s request %s failed (incident %s)", self.codec.name, request.kind, incident,
                extra={"event": "ws.request_failed", "incident": incident},
            )
            self._reply_error(session, request.reply_to, InternalError(f"internal error (incident {incident})"))
            return "internal_error"
        session.reply(request.reply_to, result)
        return None

    def _overloaded(self, session: ProtocolSession, request: Request) -> None:
        busy = Overloaded(f"more than {self.limits.max_concurrent_requests} requests in flight")
        self._reply_error(session, request.reply_to, busy)

    def _reply_error(self, session: ProtocolSession, reply_to: Any, exc: RoomsvcError) -> None:
        self._count_error(exc)
        session.reply_error(reply_to, exc)

    def _count_error(self, exc: RoomsvcError) -> None:
        self.metrics.errors.labels(str(wire_error(exc).code)).inc()


# -- the end of a session: token expiry and revocation -------------------------------------


def watch_session(services: Services, conn: Connection, principal: Principal) -> None:
    """Tie the connection to its token: closed at expiry, or now if already refused."""
    conn.principal = principal
    tokens = services.tokens
    refusal = session_refusal(services, principal)
    if refusal is not None:
        conn.close_after(0, CLOSE_UNAUTHENTICATED, refusal.message)
        return
    left = tokens.seconds_left(principal)
    if left is not None:
        conn.close_after(max(left, 0.0), CLOSE_UNAUTHENTICATED, "token expired")


def session_refusal(services: Services, principal: Principal | None) -> Unauthenticated | None:
    """Why a request on this session may not run now (revoked or expired), or None."""
    if principal is None:
        return None
    try:
        services.tokens.check(principal)
    except Unauthenticated as exc:
        return exc
    return None


_closing: set[asyncio.Task[None]] = set()


def close_revoked(services: Services, connections: Iterable[Connection]) -> None:
    """Close (4001) every open socket whose token is now revoked; never blocks."""
    tokens = services.tokens
    for conn in list(connections):
        if conn.principal is not None and not conn.closing and tokens.is_revoked(conn.principal):
            task = asyncio.get_running_loop().create_task(conn.close(CLOSE_UNAUTHENTICATED, "token revoked"))
            _closing.add(task)
            task.add_done_callback(_closing.discard)
