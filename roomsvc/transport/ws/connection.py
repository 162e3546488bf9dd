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
    ) -> None:
        self.ws = ws
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=max_queue)
        self._send_timeout = send_timeout
        self._transport = transport
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._running: set[asyncio.Task[Any]] = set()
        self._writer: asyncio.Task[None] | None = None
        self.closing = False
        self.close_code: int | None = None
        #: who the socket is authenticated as (None until then)
        self.principal: Principal | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_close: asyncio.Task[None] | None = None

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
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
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("outbound queue full: closing a slow consumer")
            self.closing = True
            self.close_code = CLOSE_SLOW_CONSUMER
            # free the queue now; closing happens off the caller's path
            while not self._queue.empty():
                self._queue.get_nowait()
            asyncio.get_running_loop().create_task(self._close_slow())

    async def _close_slow(self) -> None:
        self.closing = False  # let close() run once
        await self.close(CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue overflowed")

    async def _write_loop(self) -> None:
        while True:
            frame = await self._queue.get()
            if frame is None:
                return
            try:
                # asyncio.timeout, not wait_for: no task and no extra trip through the event
                # loop per frame (issue 12); the same deadline for each frame
                async with asyncio.timeout(self._send_timeout):
                    if isinstance(frame, bytes):
                        await self.ws.send_bytes(frame)
                    else:
                        await self.ws.send_str(frame)
            except asyncio.TimeoutError:
                log.warning("send timed out: closing a slow consumer")
                self.close_code = CLOSE_SLOW_CONSUMER
                self._abort()
                return
            except (ConnectionError, RuntimeError):
                return

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
