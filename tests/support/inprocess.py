"""The app in this test's own event loop, on a :class:`~roomsvc.clock.FakeClock` the test moves.

For time-dependent logic (token expiry, state TTLs, refresh margins): instead of sleeping
until the server's clock has moved, the test moves it (``server.clock.advance(600)``).
It listens on an ephemeral loopback port through the same ``build_app`` / ``start_site``
as ``roomsvc serve``, so real websocket and HTTP clients talk to it as to a subprocess.
It is not a replacement for :class:`tests.support.server.Server`: end-to-end tests keep
the real subprocess (signals, start-up, the CLI, crashes). Timers that run on the event
loop's own clock (a socket's expiry timer, heartbeats) do not follow the fake clock.

``InProcessServer`` has the addressing and token helpers of ``Server``, so the helpers
written for one (``tests/oauth/flows.py``, the clients) take the other.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from roomsvc.app import Runtime, build_app, open_runtime, start_site
from roomsvc.clock import FakeClock
from roomsvc.config import load_settings
from tests.support.server import FAST, data_dir_keyring, mint_token


class InProcessServer:
    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, port: int = 0,
                 clock: FakeClock | None = None, tracing: Any = None) -> None:
        self.data_dir = Path(data_dir)
        self.env = {**FAST, **(env or {})}
        self.clock = clock or FakeClock(start=time.time())
        self._port = port
        self.runtime: Runtime | None = None
        self._runner: web.AppRunner | None = None
        #: how many times each housekeeping job (runtime.periodic, by name) has run
        self.periodic_runs: dict[str, int] = {}
        #: a roomsvc.transport.tracing.Tracing to use instead of the settings' (tests/ops)
        self.tracing = tracing

    async def start(self) -> "InProcessServer":
        settings = load_settings(environ={
            **self.env, "ROOMSVC_SERVER_DATA_DIR": str(self.data_dir), "ROOMSVC_SERVER_HOST": "127.0.0.1",
            "ROOMSVC_SERVER_PORT": str(self._port),
        })
        self.runtime = await open_runtime(settings, clock=self.clock, tracing=self.tracing)
        # count the housekeeping jobs' runs, so a test can wait for the next run of one
        self.runtime.periodic[:] = [(name, interval, self._counted(name, job))
                                    for name, interval, job in self.runtime.periodic]
        self._runner = await start_site(build_app(self.runtime), self.runtime)
        return self

    def _counted(self, name: str, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            try:
                return await job()
            finally:
                self.periodic_runs[name] = self.periodic_runs.get(name, 0) + 1
        return run

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # the app's cleanup closes the runtime (store, outbound sessions)
            self._runner = None

    @property
    def port(self) -> int:
        assert self.runtime is not None and self.runtime.bound_port is not None, "not started"
        return self.runtime.bound_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, room: str) -> str:
        return f"{self.url}/v1/rooms/{room}/ws"

    def keyring(self) -> Any:
        return data_dir_keyring(self.data_dir)

    def token(self, identity: str, room: str | None = "room1", *, api: tuple[str, ...] = (), role: str = "user",
              ttl: int | None = 600, **extra: Any) -> str:
        """A participant token issued now on the server's (fake) clock."""
        return mint_token(self.keyring(), identity, room, api=api, role=role, ttl=ttl,
                          issued_at=int(self.clock.now()), **extra)
