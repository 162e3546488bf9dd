"""Real peers for the MCP tests: the test OpenID provider with dynamic registration and
resource indicators on, MCP servers built with the official ``mcp`` SDK (one honest, some
with hostile metadata), and a real roomsvc server (subprocess) that discovers them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from tests.oauth.conftest import Provider, free_port, node_ready
from tests.support.peers import need
from tests.support.processes import stop_process
from tests.support.server import Server

ROOT = Path(__file__).resolve().parents[2]
#: the provider's access tokens live this long (the refresh test waits them out)
ACCESS_TOKEN_TTL = 3


class McpPeer:
    """``python -m tests.mcp.mcp_server`` on 127.0.0.1:<port>."""

    def __init__(self, port: int, issuer: str, log_path: Path, **env: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self._log = open(log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.mcp.mcp_server"], cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True,
            env={**os.environ, "PORT": str(port), "ISSUER": issuer, **env},
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError(f"the MCP test server did not start; see {log_path}")

    async def wait_ready(self) -> None:
        from tests.support.waiting import until

        async def up() -> bool:
            try:
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.port}/__seen") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await until(up, "the MCP test server answers", within=20)

    async def seen(self) -> list[str]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.port}/__seen") as r:
            return list((await r.json())["subs"])

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@dataclass
class McpEnv:
    base: Path
    provider: Provider
    mcp: McpPeer
    #: hostile: resource mismatch, issuer mismatch, authorization server on a private address
    hostile: dict[str, McpPeer]
    env: dict[str, str]
    port: int
    server: Server
    #: the port registered at the provider for a second roomsvc (pre-registered connector test)
    connector_port: int = 0

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.provider.issuer}/__stats") as r:
            return dict(await r.json())

    def restart(self) -> None:
        """Stop roomsvc and start it again on the same data and port (a restart)."""
        self.server.stop()
        self.server = Server(self.base / "data", env=self.env, args=["--port", str(self.port)]).start()


@pytest.fixture(scope="module")
def mcp_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpEnv]:
    ok, reason = node_ready()
    need(ok, reason)
    base = tmp_path_factory.mktemp("mcp")
    op_port, mcp_port, rs_port, conn_port = free_port(), free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{op_port}"
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    env = {
        "ROOMSVC_OAUTH_CONNECTORS_DIR": str(base / "connectors"),
        "ROOMSVC_WEBSOCKET_MAX_CALL_TIMEOUT": "60",
        "ROOMSVC_OAUTH_REFRESH_MARGIN": "1",
    }
    (base / "connectors").mkdir()
    started: list[Any] = []
    try:
        # the web client (roomsvc-web) takes the callbacks of the main server and of the
        # pre-registered-connector test's server
        callbacks = [f"http://127.0.0.1:{p}/oauth/callback" for p in (rs_port, conn_port)]
        provider = Provider(op_port, callbacks, base / "provider.log",
                            REGISTRATION="1", RESOURCES=json.dumps([mcp_url]), ACCESS_TOKEN_TTL=str(ACCESS_TOKEN_TTL),
                            RESOURCE_SCOPES="mcp:tools mcp:admin")
        started.append(provider)
        mcp = McpPeer(mcp_port, issuer, base / "mcp.log")
        started.append(mcp)
        hostile = {}
        for name, extra in {
            "resource": lambda p: {"PRM_RESOURCE": f"http://127.0.0.1:{free_port()}/mcp"},
            "issuer": lambda p: {"PRM_ISSUER": f"http://127.0.0.1:{p}/fake-as"},
            # an unused loopback address stands for a private one (never a real private range)
            "private": lambda p: {"PRM_ISSUER": "https://127.0.0.2:9"},
        }.items():
            port = free_port()
            hostile[name] = McpPeer(port, issuer, base / f"mcp-{name}.log", **extra(port))
            started.append(hostile[name])
        server = Server(base / "data", env=env, args=["--port", str(rs_port)]).start()
        started.append(server)
        yield McpEnv(base, provider, mcp, hostile, env, rs_port, server, conn_port)
    finally:
        for peer in reversed(started):
            if isinstance(peer, Server):
                continue
            peer.stop()
        for peer in started:
            if isinstance(peer, Server):
                peer.stop()
