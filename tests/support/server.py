"""A real roomsvc server in a subprocess on an ephemeral port, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from roomsvc.crypto.keys import KeySources, read_signing_keyring
from roomsvc.crypto.tokens import mint
from roomsvc.domain.principal import build_claims

REPO = Path(__file__).resolve().parents[2]

#: settings every test server gets: small limits and short timers so tests are quick
FAST = {
    "ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "1",
    "ROOMSVC_WEBSOCKET_HEARTBEAT": "1",
    "ROOMSVC_WEBSOCKET_AUTH_TIMEOUT": "1",
    "ROOMSVC_WEBSOCKET_SEND_TIMEOUT": "2",
    "ROOMSVC_WEBSOCKET_MAX_CALL_TIMEOUT": "30",
    "ROOMSVC_SERVER_SHUTDOWN_TIMEOUT": "2",
    # tests ask for sub-second flow timeouts to see them expire
    "ROOMSVC_OAUTH_MIN_FLOW_TIMEOUT": "0.1",
    # rate limits stay on (the code path is live) but out of reach of functional tests,
    # which run many operations as one identity; tests/limits sets small ones
    "ROOMSVC_LIMITS_SECRET_OPS_BURST": "100000",
    "ROOMSVC_LIMITS_FLOWS_BURST": "100000",
    "ROOMSVC_LIMITS_MESSAGES_BURST": "100000",
}


def data_dir_keyring(data_dir: Path) -> Any:
    """The signing keys a server generated into its data directory (white box, for tests)."""
    sources = KeySources("", data_dir / "master.key", False, "", data_dir / "signing.key", False, False)
    keyring = read_signing_keyring(sources)
    assert keyring is not None, "the server has not generated its keys yet"
    return keyring


def mint_token(keyring: Any, identity: str, room: str | None, *, api: tuple[str, ...], role: str, ttl: int | None,
               issued_at: int, **extra: Any) -> str:
    """A participant token with an empty section for each name in ``api``; ``extra`` claims on top."""
    claims = build_claims(identity=identity, room=room, role=role, api={a: {} for a in api}, issued_at=issued_at, ttl=ttl)
    claims.update(extra)
    return mint(keyring, claims)


class Server:
    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.env = {**FAST, **(env or {})}
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.stderr_path = self.data_dir.parent / f"{self.data_dir.name}.stderr.log"
        self.banner: list[str] = []

    # -- life cycle -------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> "Server":
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        stderr = open(self.stderr_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "roomsvc", "serve", "--port", "0", "--data-dir", str(self.data_dir), *self.args],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=REPO,
        )
        stderr.close()
        found: dict[str, Any] = {}
        # set when the banner names the port, or when stdout ends (the process exited)
        listening = threading.Event()

        def read() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                self.banner.append(line.rstrip("\n"))
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m and "port" not in found:
                    found["port"] = int(m.group(1))
                    listening.set()
            listening.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not listening.wait(timeout):
            self.kill()
            raise RuntimeError(f"roomsvc did not start in {timeout}s:\n{self.stderr()}")
        if "port" not in found:
            self.proc.wait()
            raise RuntimeError(f"roomsvc exited with {self.proc.returncode}:\n{self.stderr()}")
        self.port = found["port"]
        self._answers(deadline=time.monotonic() + timeout)
        return self

    def _answers(self, *, deadline: float) -> None:
        """Wait for one HTTP answer. roomsvc prints its banner just before it installs its
        SIGTERM handler, in the same step of the event loop: once it answers a request,
        the handler is in place, and a stop() right after start() shuts down cleanly."""
        try:
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an http_proxy from the env
            direct.open(f"{self.url}/healthz", timeout=max(0.1, deadline - time.monotonic())).close()
        except urllib.error.HTTPError:
            pass  # an answer all the same

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._release()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._release()

    def _release(self) -> None:
        if self.proc is not None:
            self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.proc = None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()
        except FileNotFoundError:
            return ""

    # -- addresses and tokens ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, room: str) -> str:
        return f"{self.url}/v1/rooms/{room}/ws"

    def keyring(self):
        return data_dir_keyring(self.data_dir)

    def token(self, identity: str, room: str | None = "room1", *, api: tuple[str, ...] = (), role: str = "user",
              ttl: int | None = 600, **extra: Any) -> str:
        return mint_token(self.keyring(), identity, room, api=api, role=role, ttl=ttl, issued_at=int(time.time()), **extra)

    def operator_token(self) -> str:
        return self.token("operator", None, api=("admin",))

    def cli(self, *args: str, token: str | None = None, input: bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        full_env.update({"ROOMSVC_URL": self.url, **({"ROOMSVC_TOKEN": token} if token else {}), **(env or {})})
        return subprocess.run([sys.executable, "-m", "roomsvc", *args], input=input, capture_output=True,
                              env=full_env, cwd=REPO, timeout=timeout)
