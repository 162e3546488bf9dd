"""The three servers under test, each its own process on a free 127.0.0.1 port:
roomsvc (SQLite in a temporary data directory, access log off), the bare aiohttp
baseline (bench/bare_server.py) and python-socketio on aiohttp (bench/sio_server.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.server import Server

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

#: roomsvc's settings for the benchmark: production timers (20 s heartbeat), limits that
#: the load stays inside of (rate limits and room size raised, the outbound queue, the
#: slow-consumer close and the per-connection concurrency left at their defaults)
ROOMSVC_ENV = {
    "ROOMSVC_SERVER_ACCESS_LOG": "0",
    "ROOMSVC_SERVER_LOG_LEVEL": "warning",
    "ROOMSVC_WEBSOCKET_HEARTBEAT": "20",
    "ROOMSVC_WEBSOCKET_AUTH_TIMEOUT": "10",
    "ROOMSVC_WEBSOCKET_SEND_TIMEOUT": "10",
    "ROOMSVC_WEBSOCKET_MAX_CONNECTIONS_PER_IDENTITY": "4096",
    "ROOMSVC_ROOMS_MAX_PARTICIPANTS": "5000",
    "ROOMSVC_LIMITS_MESSAGES_RATE": "1000000",
    "ROOMSVC_LIMITS_MESSAGES_BURST": "1000000",
    "ROOMSVC_LIMITS_SECRET_OPS_RATE": "1000000",
    "ROOMSVC_LIMITS_SECRET_OPS_BURST": "1000000",
    "ROOMSVC_LIMITS_FLOWS_RATE": "1000",
    "ROOMSVC_LIMITS_FLOWS_BURST": "100000",
}


class Plain:
    """A baseline server script; it prints ``listening on http://127.0.0.1:PORT``."""

    def __init__(self, kind: str, script: str, log: Path, *args: str) -> None:
        self.kind = kind
        with open(log, "a") as stderr:
            self.proc = subprocess.Popen([sys.executable, str(BENCH / script), *args], stdout=subprocess.PIPE,
                                         stderr=stderr, text=True, cwd=REPO)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        m = re.search(r"127\.0\.0\.1:(\d+)", line[0] if line else "")
        if not m:
            self.stop()
            raise RuntimeError(f"{script} did not start")
        self.port = int(m.group(1))
        time.sleep(0.3)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, room: str) -> str:
        if self.kind == "socketio":
            return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket&room={room}"
        return f"ws://127.0.0.1:{self.port}/ws?room={room}"

    def token(self, identity: str, room: str, **_: Any) -> str:
        return "bench"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


class Roomsvc:
    kind = "roomsvc"

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.server = Server(data_dir, env={**ROOMSVC_ENV, **(env or {})}).start()
        self._keyring = self.server.keyring()

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    @property
    def url(self) -> str:
        return self.server.url

    def ws_url(self, room: str) -> str:
        return self.server.ws_url(room).replace("http://", "ws://")

    def token(self, identity: str, room: str, *, api: tuple[str, ...] = (), role: str = "user") -> str:
        from tests.support.server import mint_token
        return mint_token(self._keyring, identity, room, api=api, role=role, ttl=3600, issued_at=int(time.time()))

    def stop(self) -> None:
        self.server.stop()


def start(kind: str, tmp: Path, env: dict[str, str] | None = None) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    if kind == "roomsvc":
        return Roomsvc(tmp / "data", env)
    if kind == "bare":
        return Plain("bare", "bare_server.py", tmp / "bare.log", str(tmp / "bare"), "bench")
    if kind == "socketio":
        return Plain("socketio", "sio_server.py", tmp / "socketio.log")
    raise ValueError(kind)
