"""Scenario 7 and the OAuth credential of scenario 3, against the real test provider
(tests/peers/oidc: npm oidc-provider, set up by scripts/setup-peers).

A flow through roomsvc is the whole consent without a browser: an agent asks a person
(``secrets.request_oauth_token``), the person opens roomsvc's start link, logs in and
consents at the provider (tests/peers/oidc/flow_driver.py), and roomsvc's callback
exchanges the code and stores the credential; timed until the agent has its answer.
The direct flow is the same authorization-code + PKCE consent and code exchange done by
a client straight against the provider. Each flow uses a fresh cookie jar, so the
provider asks for login and consent every time on both sides.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import statistics
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp

from tests.oauth.conftest import CLIENT_SECRET, Provider, free_port, node_ready, write_connectors
from tests.oauth.flows import run_flow
from tests.peers.oidc.flow_driver import drive_consent
from tests.support.native_client import NativeClient

#: registered at the provider for the direct flow; never requested (the code is read off the redirect)
DIRECT_REDIRECT = "http://127.0.0.1:9/direct/callback"


def ready() -> tuple[bool, str]:
    return node_ready()


class OAuthPeer:
    """The provider, and the roomsvc settings that point a server at it."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.connectors = tmp / "connectors"
        write_connectors(self.connectors, self.issuer)
        self.tmp = tmp
        self.provider: Provider | None = None
        self.env = {
            "ROOMSVC_OAUTH_CONNECTORS_DIR": str(self.connectors),
            "ROOMSVC_OAUTH_INLINE_ENDPOINTS": f"{self.issuer}/*",
            "OIDC_TEST_CLIENT_SECRET": CLIENT_SECRET,
        }

    def start(self, roomsvc_url: str) -> None:
        self.provider = Provider(self.port, [f"{roomsvc_url}/oauth/callback", DIRECT_REDIRECT],
                                 self.tmp / "provider.log", ACCESS_TOKEN_TTL="3600")

    def stop(self) -> None:
        if self.provider is not None:
            self.provider.stop()


async def through_roomsvc(server, agent_identity: str, person_identity: str, room: str) -> tuple[float, str]:
    """One consent through roomsvc: (seconds, the stored credential as ``owner/id``)."""
    agent = await NativeClient.connect(server.ws_url(room), server.token(agent_identity, room, api=("secrets",), role="tool"))
    person = await NativeClient.connect(server.ws_url(room), server.token(person_identity, room, api=("secrets",)))
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            t0 = time.perf_counter()
            answer, _ = await run_flow(browser, agent, person, person_identity, delegate_to=agent_identity)
            elapsed = time.perf_counter() - t0
        credential = answer["credential"]
        return elapsed, f"{credential['owner']}/{credential['id']}"
    finally:
        await agent.close()
        await person.close()


async def direct(issuer: str, login: str) -> float:
    """The same consent and code exchange, a client straight against the provider."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        t0 = time.perf_counter()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        url = f"{issuer}/auth?" + urlencode({
            "response_type": "code", "client_id": "roomsvc-web", "redirect_uri": DIRECT_REDIRECT, "scope": "openid",
            "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
        })
        callback = await drive_consent(browser, url, login=login)
        query = parse_qs(urlsplit(callback).query)
        assert query["state"] == [state], query
        async with browser.post(f"{issuer}/token", auth=aiohttp.BasicAuth("roomsvc-web", CLIENT_SECRET), data={
            "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": DIRECT_REDIRECT,
            "code_verifier": verifier,
        }) as r:
            body = await r.json()
            assert r.status == 200 and "access_token" in body, (r.status, body)
        return time.perf_counter() - t0


async def overhead(server, issuer: str, flows: int, room: str, progress) -> dict[str, float]:
    """Median flow time through roomsvc and directly, interleaved, ``flows`` of each."""
    ours, theirs = [], []
    for i in range(flows):
        theirs.append(await direct(issuer, f"direct-{i}"))
        ours.append((await through_roomsvc(server, "flow-agent", f"flow-person-{i}", room))[0])
        progress(f"flow {i + 1}/{flows}: roomsvc {ours[-1] * 1e3:.1f} ms, direct {theirs[-1] * 1e3:.1f} ms")
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    return {"roomsvc_ms": m_ours * 1e3, "direct_ms": m_theirs * 1e3, "overhead_ms": (m_ours - m_theirs) * 1e3}
