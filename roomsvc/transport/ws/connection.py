"""One websocket connection: a bounded outbound queue with a single writer, and
bounded concurrent request handling.

The protocol session the domain delivers events to encodes them and queues the frames
with :meth:`Connection.send_nowait`, which never blocks. If the queue is full (a client
that does not read), the connection is closed with 4030 and its memory freed, and
nobody else waits. One writer task sends frames in order, which the MeshAgent framing
needs (packets of two messages must never interleave).

Requests run as tasks, at most ``max_concurrent`` at once per connection, so a request
that waits minutes for another participant never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from roomsvc.domain.principal import Principal
from roomsvc.transport.metrics import WsStats

log = logging.getLogger("roomsvc.ws")

Frame = str | bytes

CLOSE_SLOW_CONSUMER = 4030


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        max_queue: int,
        send_timeout: float,
        max_concurrent: int,
        transport: Any = None,
        stats: WsStats | None = None,
    ) -> None:
        self.ws = ws
        #: frames sent, overflows and slow-consumer closes (None: not counted)
        self._stats = stats
        self._max_queue = max_queue
        #: created, with the writer task, the first time a frame has to wait (issue 12:
        #: an idle connection holds neither, which is a tenth of its memory)
        self._queue: asyncio.Queue[Frame | None] | None = None
        self._started = False
        self._send_timeout = send_timeout
        self._transport = transport
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._running: set[asyncio.Task[Any]] = set()
        self._writer: asyncio.Task[None] | None = None
        #: the writer waits for a frame with nothing in hand (a frame may then go at once)
        self._idle = False
        self.closing = False
        self.close_code: int | None = None
        #: who the socket is authenticated as (None until then)
        self.principal: Principal | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_close: asyncio.Task[None] | None = None

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """The socket is prepared: frames may be written from now on."""
        self._started = True
        if self._queue is not None and not self._queue.empty():
            self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="ws-writer")

    def close_after(self, delay: float, code: int, reason: str) -> None:
        """Close the socket ``delay`` seconds from now (one timer; a later call replaces it)."""
        if self._timer is not None:
            self._timer.cancel()

        def fire() -> None:
            self._timed_close = asyncio.get_running_loop().create_task(self.close(code, reason))

        self._timer = asyncio.get_running_loop().call_later(delay, fire)

    async def stop(self) -> None:
        """Stop request tasks and the writer (the socket is closed by the caller)."""
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._idle = False
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def close(self, code: int, reason: str = "") -> None:
        """Close the socket; if the peer cannot take the close frame in time, drop it."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason[:120].encode()), timeout=2.0)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- outbound ---------------------------------------------------------------------

    def send_nowait(self, frame: Frame) -> None:
        if self.closing:
            return
        nothing_ahead = self._started and (self._idle if self._writer is not None else True) and (
            self._queue is None or self._queue.empty())
        if nothing_ahead and self._room_for(frame):
            self._write_now(frame)  # no trip through the writer task
            return
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self._max_queue)
        if self._started:
            self._start_writer()
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("outbound queue full: closing a slow consumer")
            if self._stats is not None:
                self._stats.overflows.inc()
                self._stats.closed_overflow.inc()
            self.closing = True
            self.close_code = CLOSE_SLOW_CONSUMER
            # free the queue now; closing happens off the caller's path
            while not self._queue.empty():
                self._queue.get_nowait()
            asyncio.get_running_loop().create_task(self._close_slow())

    async def _close_slow(self) -> None:
        self.closing = False  # let close() run once
        await self.close(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue overflowed")

    # A frame is written at once, without the writer task and without a timer, only when
    # the write cannot wait on the peer (issue 12: the task wake-up and the timer per frame
    # were a third of a fan-out's server CPU). Every write that could wait goes through the
    # writer under ``send_timeout`` as before, so a client that does not read still fills
    # the bounded queue and is closed.

    def _room_for(self, frame: Frame) -> bool:
        """Whether writing ``frame`` now cannot wait on the peer: the transport's buffer stays
        at or below its low-water mark, so it is not paused and does not pause, and aiohttp
        writes an uncompressed frame without suspending."""
        transport = self._transport
        if transport is None or self.ws.compress:
            return False
        try:
            low, _ = transport.get_write_buffer_limits()
            size = transport.get_write_buffer_size()
        except (AttributeError, NotImplementedError):
            return False
        # at most 4 bytes per character in UTF-8, and 14 bytes of frame header
        return bool(size + len(frame) * (1 if isinstance(frame, bytes) else 4) + 14 <= low)

    def _write_now(self, frame: Frame) -> None:
        """Run aiohttp's send to completion synchronously (see :meth:`_room_for`)."""
        send = self.ws.send_bytes(frame) if isinstance(frame, bytes) else self.ws.send_str(frame)
        try:
            send.send(None)
        except StopIteration:
            self._count_sent()
            return
        except (ConnectionError, RuntimeError):
            return  # the socket is going away; the read side ends the connection
        self._count_sent()
        # it suspended after all (only a flow-control wait is left: the frame is written);
        # the next frame sees the full buffer and goes through the writer
        send.close()

    async def _write_loop(self) -> None:
        while True:
            self._idle = True
            assert self._queue is not None
            frame = await self._queue.get()
            self._idle = False
            if frame is None:
                return
            try:
                if self._room_for(frame):
                    if isinstance(frame, bytes):
                        await self.ws.send_bytes(frame)
                    else:
                        await self.ws.send_str(frame)
                else:
                    # asyncio.timeout, not wait_for: no task per frame; the same deadline
                    async with asyncio.timeout(self._send_timeout):
                        if isinstance(frame, bytes):
                            await self.ws.send_bytes(frame)
                        else:
                            await self.ws.send_str(frame)
            except asyncio.TimeoutError:
                log.warning("send timed out: closing a slow consumer")
                if self._stats is not None:
                    self._stats.closed_timeout.inc()
                self.close_code = CLOSE_SLOW_CONSUMER
                self._abort()
                return
            except (ConnectionError, RuntimeError):
                return
            self._count_sent()

    def _count_sent(self) -> None:
        if self._stats is not None:
            self._stats.sent.inc()

    # -- requests -----------------------------------------------------------------------

    def spawn(self, work: Callable[[], Awaitable[None]], on_overload: Callable[[], None]) -> None:
        """Run a request handler concurrently, within the per-connection bound."""
        if len(self._running) >= self._max_concurrent:
            on_overload()
            return

        async def run() -> None:
            async with self._slots:
                await work()

        task = asyncio.get_running_loop().create_task(run())
        self._running.add(task)
        task.add_done_callback(self._running.discard)
