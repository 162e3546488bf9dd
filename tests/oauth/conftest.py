"""A real roomsvc (subprocess) and a real OpenID provider (npm oidc-provider) per module.

Order: pick the provider's port, write a connectors directory pointing at it, start
the roomsvc server, reserve a port for the in-process server on a fake clock
(``fake_time_server``: refresh, expiry and state-TTL tests move its clock instead of
sleeping), then start the provider with both servers' callbacks as the web client's
redirect URIs. A missing node / npm package skips (or fails under
ROOMSVC_TEST_REQUIRE_ALL=1) with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from roomsvc.crypto.tokens import mint
from roomsvc.domain.principal import build_claims
from tests.support import postgres
from tests.support.inprocess import InProcessServer
from tests.support.native_client import NativeClient
from tests.support.peers import need
from tests.support.server import Server

OIDC_DIR = Path(__file__).resolve().parents[1] / "peers" / "oidc"
CLIENT_SECRET = "roomsvc-web-secret"
#: the provider's access tokens live this long; roomsvc refreshes 1 s before expiry
ACCESS_TOKEN_TTL = 4
REFRESH_MARGIN = 1
#: a redirect URI registered for the MeshAgent-way test (an app's own callback; never requested)
APP_REDIRECT = "http://127.0.0.1:9/app/oauth2/callback"


def node_ready() -> tuple[bool, str]:
    if shutil.which("node") is None:
        return False, "node is not installed (the OAuth tests run npm oidc-provider)"
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        return False, "tests/peers/oidc/node_modules is missing: run scripts/setup-peers (npm ci)"
    return True, ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Provider:
    """node tests/peers/oidc/provider.mjs on 127.0.0.1:<port>."""

    def __init__(self, port: int, redirect_uris: list[str], log_path: Path, **env: str) -> None:
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        full = {**os.environ, "PORT": str(port), "ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
                "REDIRECT_URIS": json.dumps(redirect_uris), **env}
        self._log = open(log_path, "a")
        self.proc = subprocess.Popen(
            ["node", "provider.mjs"], cwd=OIDC_DIR, env=full, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(20)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError(f"the OIDC provider did not start; see {log_path}")
        info = json.loads(line[0])
        assert info["issuer"] == self.issuer, info

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@dataclass
class OAuthEnv:
    server: Server
    provider: Provider
    connectors: Path
    #: the roomsvc settings of the module's servers (the subprocess and the in-process one)
    env: dict[str, str]
    #: the port reserved (and registered at the provider) for ``fake_time_server``
    fake_time_port: int
    counter: list[int] = field(default_factory=lambda: [0])

    @property
    def issuer(self) -> str:
        return self.provider.issuer

    def ids(self, *names: str) -> list[str]:
        """Fresh identities, so each test starts with nothing stored."""
        self.counter[0] += 1
        return [f"{n}-{self.counter[0]}" for n in names]

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.issuer}/__stats") as r:
            return dict(await r.json())

    async def userinfo(self, token: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.issuer}/me", headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json(content_type=None)

    @contextlib.asynccontextmanager
    async def agent_and_person(self, person_name: str, *, agent_name: str = "agent", agent_role: str = "agent",
                               server: Any = None) -> AsyncIterator[tuple[str, str, NativeClient, NativeClient]]:
        """A fresh agent and person connected to the main server (or ``server``); both closed at the end."""
        agent_id, person_id = self.ids(agent_name, person_name)
        agent = await self.connect(agent_id, role=agent_role, server=server)
        person = await self.connect(person_id, server=server)
        try:
            yield agent_id, person_id, agent, person
        finally:
            await agent.close()
            await person.close()

    async def connect(self, identity: str, *, server: Any = None, room: str = "room1",
                      api: dict[str, Any] | None = None, role: str = "user") -> NativeClient:
        srv = server or self.server
        token = _token_with_api(srv, identity, room, role, {"secrets": {}} if api is None else api)
        return await NativeClient.connect(srv.ws_url(room), token)


def _token_with_api(srv: Any, identity: str, room: str, role: str, api: dict[str, Any]) -> str:
    claims = build_claims(identity=identity, room=room, role=role, api=api, issued_at=int(time.time()), ttl=600)
    return mint(srv.keyring(), claims)


def write_connectors(root: Path, issuer: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "oidc.toml").write_text(
        f'issuer = "{issuer}"\nclient_id = "roomsvc-web"\nclient_secret_env = "OIDC_TEST_CLIENT_SECRET"\n'
        'scopes = ["openid"]\nallowed_hosts = ["127.0.0.1"]\n'
    )
    # the public client, by explicit endpoints and no secret (PKCE only)
    (root / "oidc-public.toml").write_text(
        f'authorization_endpoint = "{issuer}/auth"\ntoken_endpoint = "{issuer}/token"\n'
        f'revocation_endpoint = "{issuer}/token/revocation"\nuserinfo_endpoint = "{issuer}/me"\n'
        'client_id = "roomsvc-native"\nscopes = ["openid"]\n'
    )
    (root / "README.disabled").write_text("not a connector: skipped by the loader\n")


@pytest.fixture(scope="module")
def oauth_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ok, reason = node_ready()
    need(ok, reason)
    base = tmp_path_factory.mktemp("oauth")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    connectors = base / "connectors"
    write_connectors(connectors, issuer)
    env = {
        "ROOMSVC_OAUTH_CONNECTORS_DIR": str(connectors),
        "ROOMSVC_OAUTH_REFRESH_MARGIN": str(REFRESH_MARGIN),
        "ROOMSVC_OAUTH_REFRESH_BACKOFF": "0.05",
        "ROOMSVC_OAUTH_INLINE_ENDPOINTS": f"{issuer}/*",
        "ROOMSVC_WEBSOCKET_MAX_CONCURRENT_REQUESTS": "64",
        "ROOMSVC_WEBSOCKET_MAX_CALL_TIMEOUT": "60",
        "OIDC_TEST_CLIENT_SECRET": CLIENT_SECRET,
    }
    (base / "main").mkdir()
    server = Server(base / "main" / "data", env=env).start()
    fake_time_port = free_port()
    redirects = [f"{server.url}/oauth/callback", f"http://127.0.0.1:{fake_time_port}/oauth/callback", APP_REDIRECT]
    try:
        provider = Provider(port, redirects, base / "provider.log", EXTRA_TOKEN_DELAY_MS="50",
                            NATIVE_REDIRECT_URIS=json.dumps(["http://127.0.0.1/oauth/callback"]))
    except BaseException:
        server.stop()
        raise
    yield OAuthEnv(server, provider, connectors, env, fake_time_port)
    provider.stop()
    server.stop()


@pytest.fixture
async def fake_time_server(oauth_env: OAuthEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           ) -> AsyncIterator[InProcessServer]:
    """The app in process on a fake clock, with the module's connectors and provider:
    tests move ``fake_time_server.clock`` past an expiry instead of sleeping until it."""
    monkeypatch.setenv("OIDC_TEST_CLIENT_SECRET", CLIENT_SECRET)  # the connector's client_secret_env
    env = {k: v for k, v in oauth_env.env.items() if k.startswith("ROOMSVC_")}
    server = await InProcessServer(tmp_path / "data", env=env, port=oauth_env.fake_time_port).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(params=("sqlite", "postgres"))
async def fake_time_server_on(request: pytest.FixtureRequest, oauth_env: OAuthEnv, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProcessServer]:
    """``fake_time_server`` once per storage engine (issue 15): on PostgreSQL in a
    database of its own, dropped after the test."""
    monkeypatch.setenv("OIDC_TEST_CLIENT_SECRET", CLIENT_SECRET)
    env = {k: v for k, v in oauth_env.env.items() if k.startswith("ROOMSVC_")}
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN}")
            env.update(postgres.postgres_env(stack.enter_context(postgres.database("roomsvc_test_oauth"))))
        server = await InProcessServer(tmp_path / "data", env=env, port=oauth_env.fake_time_port).start()
        try:
            yield server
        finally:
            await server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A cookie-keeping HTTP client standing in for a person's browser."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session
