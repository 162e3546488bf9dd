"""``roomsvc toolkit mcp`` (the real CLI, a subprocess) bridging an MCP server built with
the official SDK into a room, with the real oidc-provider as its authorization server:
an agent lists and calls tools through the native ``call``; the person consents once (in
headless Chromium); the
token is refreshed once for concurrent calls after it expires; the agent never receives the
token; a second person gets their own consent and upstream identity."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from roomsvc.domain.oauth.connectors import resource_credential_id
from roomsvc.transport.meshagent.packing import ErrorContent, JsonContent
from tests.mcp.conftest import ACCESS_TOKEN_TTL, ROOT, McpEnv
from tests.meshagent.raw_client import RawClient
from tests.oauth.conftest import OIDC_DIR
from tests.oauth.flows import consent, finish, open_link, read_credential
from tests.support.native_client import NativeClient, ResponseError
from tests.support.peers import need
from tests.support.processes import stop_process
from tests.support.waiting import until


class RecordingClient(NativeClient):
    """A native client that keeps every frame it receives, as text."""

    raw: list[str]

    async def _read(self) -> None:
        self.raw = []
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                self.raw.append(msg.data)
                frame = json.loads(msg.data)
                if frame.get("type") == "response" and frame.get("id") in self._pending:
                    future = self._pending.pop(frame["id"])
                    if not future.done():
                        future.set_result(frame)
                else:
                    await self.events.put(frame)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self.closed.set()


class Bridge:
    """``python -m roomsvc toolkit mcp`` as a subprocess."""

    def __init__(self, env: McpEnv, room: str, identity: str, log: Path, *extra: str, url: str = "") -> None:
        token = env.server.token(identity, room, api=("secrets",), role="agent")
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        run_env.update({"ROOMSVC_TOKEN": token, "ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "1",
                        "ROOMSVC_OAUTH_REFRESH_MARGIN": "1", "PYTHONUNBUFFERED": "1"})
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "roomsvc", "toolkit", "mcp", "--server", env.server.url, "--room", room,
                 "--url", url or env.mcp.url, "--name", "tools", *extra],
                cwd=ROOT, env=run_env, stdout=out, stderr=out,
            )

    def stop(self) -> None:
        stop_process(self.proc)


async def toolkit_id(client: NativeClient, name: str = "tools") -> str:
    found: list[str] = []

    async def joined() -> bool:
        for p in (await client.request("participants.list"))["participants"]:
            if (p.get("attributes") or {}).get("toolkit") == name:
                found.append(p["id"])
                return True
        return False

    await until(joined, "the MCP toolkit joined the room", within=30)
    return found[0]


async def call(agent: NativeClient, to: str, method: str, body: dict[str, Any], timeout: float = 50) -> Any:
    return (await agent.request("call", {"to": to, "method": method, "body": body, "timeout": timeout}, timeout=timeout + 5))["body"]


async def consent_in_chromium(person: NativeClient, login: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The person consents in real headless Chromium (tests/oauth/browser_consent.mjs)."""
    need(Path("/usr/bin/chromium").exists() or shutil.which("chromium") is not None,
         "Debian's chromium is not installed (apt-get install chromium)")
    need((OIDC_DIR / "node_modules" / "playwright-core").is_dir(), "playwright-core missing: run scripts/setup-peers")
    push = (await person.next_event("secrets.request_oauth_token", timeout=30))["data"]
    proc = await asyncio.create_subprocess_exec(
        "node", str(ROOT / "tests" / "oauth" / "browser_consent.mjs"), push["start_url"], login,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["status"] == 200 and seen["heading"] == "Connected", seen
    return push, seen


async def consent_when_asked(person: NativeClient, login: str) -> dict[str, Any]:
    push = (await person.next_event("secrets.request_oauth_token", timeout=30))["data"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        status, page = await finish(browser, await consent(browser, await open_link(browser, push["start_url"]), login))
        assert status == 200, page
    return push


def text_of(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


@pytest.fixture
async def peers(mcp_env: McpEnv, tmp_path: Path) -> AsyncIterator[McpEnv]:
    await mcp_env.mcp.wait_ready()
    yield mcp_env


async def test_agent_calls_a_tool_person_consents_once_refresh_once_token_never_seen(peers: McpEnv, tmp_path: Path) -> None:
    env = peers
    room = "bridge1"
    bridge = Bridge(env, room, "mcp-bridge", tmp_path / "bridge.log", "--for-identity", "alice")
    agent = await RecordingClient.connect(env.server.ws_url(room), env.server.token("agent1", room, api=("secrets",), role="agent"))
    alice = await NativeClient.connect(env.server.ws_url(room), env.server.token("alice", room, api=("secrets",)))
    try:
        tk = await toolkit_id(agent)
        first = asyncio.get_running_loop().create_task(call(agent, tk, "tools.call", {"name": "whoami", "arguments": {}}))
        push, page = await consent_in_chromium(alice, "alice-upstream")
        assert push["from"]["identity"] == "mcp-bridge"  # the bridge asks; the credential is alice's
        result = await first
        assert json.loads(text_of(result))["sub"] == "alice-upstream"
        assert json.loads(text_of(result))["aud"] == env.mcp.url

        # later calls need no consent; list and tool errors pass through as the server sent them
        tools = await call(agent, tk, "tools.list", {})
        assert {t["name"] for t in tools["tools"]} >= {"whoami", "echo", "fail"}
        echoed = await call(agent, tk, "tools.call", {"name": "echo", "arguments": {"text": "hi"}})
        assert text_of(echoed) == "hi" and not echoed.get("isError")
        failed = await call(agent, tk, "tools.call", {"name": "fail", "arguments": {"reason": "boom-1234"}})
        assert failed["isError"] is True and "boom-1234" in text_of(failed)
        with pytest.raises(asyncio.TimeoutError):
            await alice.next_event("secrets.request_oauth_token", timeout=0.3)

        # a MeshAgent client invokes the bridge's tool as a toolkit hosted by a participant
        mesh = await RawClient.connect(env.server.url, room, env.server.token("mesh-agent", room, api=("secrets",), role="agent"))
        try:
            answer = await mesh.invoke_hosted("tools", "echo", tk, JsonContent({"text": "from meshagent"}), timeout=50)
            assert isinstance(answer, JsonContent) and answer.json["content"][0]["text"] == "from meshagent"
            wrong = await mesh.invoke_hosted("other-toolkit", "echo", tk, JsonContent({"text": "x"}), timeout=10)
            assert isinstance(wrong, ErrorContent) and wrong.code == 1003
        finally:
            await mesh.close()

        cid = resource_credential_id(env.provider.issuer, env.mcp.url)
        tokens = {read_credential(env.server, room, "alice", cid)["access_token"]}

        # after the access token expires: concurrent calls, one refresh at the provider
        before = (await env.stats())["token_ok"]["refresh_token"]
        await asyncio.sleep(ACCESS_TOKEN_TTL + 0.5)
        results = await asyncio.gather(*[
            call(agent, tk, "tools.call", {"name": "whoami", "arguments": {}}) for _ in range(4)
        ])
        assert all(json.loads(text_of(r))["sub"] == "alice-upstream" for r in results)
        assert (await env.stats())["token_ok"]["refresh_token"] - before == 1
        stored = read_credential(env.server, room, "alice", cid)
        tokens |= {stored["access_token"], stored["refresh_token"]}
        assert len(tokens) == 3  # a new access token was issued

        # the agent cannot fetch alice's token from roomsvc either: her consent covers the bridge
        offline = await agent.request("secrets.get_offline_oauth_token",
                                      {"mcp": {"url": env.mcp.url}, "delegated_by": "alice"})
        assert offline["access_token"] is None

        # the agent never received a token, in any frame
        assert agent.raw and not [t for t in tokens if any(t in frame for frame in agent.raw)]
        assert not [t for t in tokens if t in page["text"]]  # nor the person's callback page
    finally:
        await agent.close()
        await alice.close()
        bridge.stop()


async def test_a_person_calling_directly_gets_their_own_consent_and_identity(peers: McpEnv, tmp_path: Path) -> None:
    env = peers
    room = "bridge2"
    bridge = Bridge(env, room, "mcp-bridge2", tmp_path / "bridge.log")
    bob = await NativeClient.connect(env.server.ws_url(room), env.server.token("bob", room, api=("secrets",)))
    agent = await NativeClient.connect(env.server.ws_url(room), env.server.token("agent2", room, api=("secrets",), role="agent"))
    try:
        tk = await toolkit_id(bob)
        first = asyncio.get_running_loop().create_task(call(bob, tk, "tools.call", {"name": "whoami", "arguments": {}}))
        await consent_when_asked(bob, "bob-upstream")
        assert json.loads(text_of(await first))["sub"] == "bob-upstream"
        # without --for-identity an agent's call is refused, clearly, and nobody is asked
        with pytest.raises(ResponseError, match="for-identity"):
            await call(agent, tk, "tools.call", {"name": "whoami", "arguments": {}})
    finally:
        await bob.close()
        await agent.close()
        bridge.stop()
    assert (await env.stats())["registration"] == 1  # one registration for this provider, reused


async def test_hostile_metadata_reaches_the_agent_as_a_clear_error_and_nobody_is_asked(peers: McpEnv, tmp_path: Path) -> None:
    env = peers
    room = "bridge3"
    peer = env.hostile["issuer"]
    await peer.wait_ready()
    bridge = Bridge(env, room, "mcp-bridge3", tmp_path / "bridge.log", "--for-identity", "carol", url=peer.url)
    agent = await NativeClient.connect(env.server.ws_url(room), env.server.token("agent3", room, api=("secrets",), role="agent"))
    carol = await NativeClient.connect(env.server.ws_url(room), env.server.token("carol", room, api=("secrets",)))
    try:
        tk = await toolkit_id(agent)
        with pytest.raises(ResponseError) as info:
            await call(agent, tk, "tools.call", {"name": "whoami", "arguments": {}})
        assert "discovery refused" in str(info.value) and "another issuer" in str(info.value), info.value
        with pytest.raises(asyncio.TimeoutError):
            await carol.next_event("secrets.request_oauth_token", timeout=0.3)
    finally:
        await agent.close()
        await carol.close()
        bridge.stop()


async def test_insufficient_scope_asks_the_person_again_for_the_wider_scopes(peers: McpEnv, tmp_path: Path) -> None:
    env = peers
    room = "bridge4"
    bridge = Bridge(env, room, "mcp-bridge4", tmp_path / "bridge.log", "--for-identity", "dana")
    agent = await NativeClient.connect(env.server.ws_url(room), env.server.token("agent4", room, api=("secrets",), role="agent"))
    dana = await NativeClient.connect(env.server.ws_url(room), env.server.token("dana", room, api=("secrets",)))
    try:
        tk = await toolkit_id(agent)
        first = asyncio.get_running_loop().create_task(call(agent, tk, "tools.call", {"name": "echo", "arguments": {"text": "a"}}))
        push = await consent_when_asked(dana, "dana-upstream")
        assert push["request"]["oauth"]["scopes"] == ["mcp:tools"]
        assert text_of(await first) == "a"
        # the wider tool: 403 insufficient_scope, dana is asked for both scopes, the call then succeeds
        wider = asyncio.get_running_loop().create_task(
            call(agent, tk, "tools.call", {"name": "admin_echo", "arguments": {"text": "b"}}))
        push = await consent_when_asked(dana, "dana-upstream")
        assert push["request"]["oauth"]["scopes"] == ["mcp:tools", "mcp:admin"]
        assert text_of(await wider) == "admin: b"
        # and the narrower tools still work with the new token, with no further consent
        assert text_of(await call(agent, tk, "tools.call", {"name": "echo", "arguments": {"text": "c"}})) == "c"
        with pytest.raises(asyncio.TimeoutError):
            await dana.next_event("secrets.request_oauth_token", timeout=0.3)
    finally:
        await agent.close()
        await dana.close()
        bridge.stop()
