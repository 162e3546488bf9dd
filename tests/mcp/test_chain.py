"""The MCP authorization chain end to end, with real peers: roomsvc discovers the MCP
server's authorization server (the real oidc-provider), registers itself there once
(RFC 7591), asks the person to consent through the existing OAuth flow with the RFC 8707
``resource``, and the token it stores is bound to the MCP server (the SDK-built server
accepts it and reports the person's ``sub``). Hostile metadata is refused before anyone
is asked."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from roomsvc.integrations.mcp_client import AuthorizationNeeded, McpUpstream
from tests.mcp.conftest import McpEnv
from tests.oauth.flows import consent, finish, open_link
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import Server

COUNTER = [0]


def claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


async def connect(env: McpEnv, identity: str, *, room: str, role: str = "user") -> NativeClient:
    token = env.server.token(identity, room, api=("secrets",), role=role)
    return await NativeClient.connect(env.server.ws_url(room), token)


def fresh(*names: str) -> list[str]:
    COUNTER[0] += 1
    return [f"{n}-{COUNTER[0]}" for n in names]


async def consent_via_room(env: McpEnv, agent: NativeClient, person: NativeClient, login: str, url: str) -> dict[str, Any]:
    """The agent asks for a token for the MCP server; the person consents in a browser."""
    task = asyncio.get_running_loop().create_task(agent.request(
        "secrets.request_oauth_token", {"from_participant_id": person.participant_id, "mcp": {"url": url}, "timeout": 30},
        timeout=40,
    ))
    push = (await person.next_event("secrets.request_oauth_token", timeout=15))["data"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        authorize = await open_link(browser, push["start_url"])
        assert "resource=" in authorize  # RFC 8707 on the authorization request
        status, page = await finish(browser, await consent(browser, authorize, login))
        assert status == 200, page
    return await task


async def test_consent_once_token_bound_to_the_mcp_server_and_dcr_once(mcp_env: McpEnv) -> None:
    await mcp_env.mcp.wait_ready()
    before = (await mcp_env.stats())["registration"]
    agent_id, person_id = fresh("agent", "alice")
    agent = await connect(mcp_env, agent_id, room="mcp1", role="agent")
    person = await connect(mcp_env, person_id, room="mcp1")
    try:
        grant = await consent_via_room(mcp_env, agent, person, "alice-upstream", mcp_env.mcp.url)
        token = grant["access_token"]
        seen = claims(token)
        assert seen["aud"] == mcp_env.mcp.url and seen["sub"] == "alice-upstream"
        assert "mcp:tools" in seen["scope"].split()
        result = await McpUpstream(mcp_env.mcp.url).call_tool(token, "whoami", {})
        assert json.loads(result["content"][0]["text"])["sub"] == "alice-upstream"
        # stored: a later request is answered without asking the person again
        again = await agent.request("secrets.get_offline_oauth_token",
                                    {"mcp": {"url": mcp_env.mcp.url}, "delegated_by": person_id})
        assert again["access_token"] == token
    finally:
        await agent.close()
        await person.close()
    assert (await mcp_env.stats())["registration"] - before == 1

    # a second person in another room: their own consent and upstream identity, no new registration
    agent_id, person_id = fresh("agent", "bob")
    agent = await connect(mcp_env, agent_id, room="mcp2", role="agent")
    person = await connect(mcp_env, person_id, room="mcp2")
    try:
        grant = await consent_via_room(mcp_env, agent, person, "bob-upstream", mcp_env.mcp.url)
        result = await McpUpstream(mcp_env.mcp.url).call_tool(grant["access_token"], "whoami", {})
        assert json.loads(result["content"][0]["text"])["sub"] == "bob-upstream"
    finally:
        await agent.close()
        await person.close()
    assert (await mcp_env.stats())["registration"] - before == 1

    # after a restart the kept registration (an encrypted project secret) is reused
    mcp_env.restart()
    agent_id, person_id = fresh("agent", "carol")
    agent = await connect(mcp_env, agent_id, room="mcp3", role="agent")
    person = await connect(mcp_env, person_id, room="mcp3")
    try:
        await consent_via_room(mcp_env, agent, person, "carol-upstream", mcp_env.mcp.url)
    finally:
        await agent.close()
        await person.close()
    assert (await mcp_env.stats())["registration"] - before == 1
    listed = mcp_env.server.cli("mcp", "clients", token=mcp_env.server.operator_token())
    assert listed.returncode == 0, listed.stderr
    assert mcp_env.provider.issuer.encode() in listed.stdout
    # an operator may delete a registration (roomsvc registers again when next needed); nobody else
    secret_id = listed.stdout.decode().split("secret=")[1].split()[0]
    async with aiohttp.ClientSession() as s:
        url = f"{mcp_env.server.url}/v1/admin/secrets/mcp-client/{secret_id}"
        denied = mcp_env.server.token("someone", "mcp1", api=("secrets", "admin"))
        async with s.delete(url, headers={"Authorization": f"Bearer {denied}"}) as r:
            assert r.status == 403
        async with s.delete(url, headers={"Authorization": f"Bearer {mcp_env.server.operator_token()}"}) as r:
            assert r.status == 200, await r.text()
    assert b"no MCP client registrations" in mcp_env.server.cli(
        "mcp", "clients", token=mcp_env.server.operator_token()).stdout


async def test_without_a_token_the_mcp_server_asks_for_authorization(mcp_env: McpEnv) -> None:
    await mcp_env.mcp.wait_ready()
    with pytest.raises(AuthorizationNeeded) as info:
        await McpUpstream(mcp_env.mcp.url).list_tools(None)
    assert info.value.status == 401 and "resource_metadata=" in info.value.challenge


@pytest.mark.parametrize("kind, reason", [
    ("resource", "another resource"),
    ("issuer", "another issuer"),
])
async def test_hostile_metadata_is_refused_before_anyone_is_asked(mcp_env: McpEnv, kind: str, reason: str) -> None:
    peer = mcp_env.hostile[kind]
    await peer.wait_ready()
    agent_id, person_id = fresh("agent", "dave")
    agent = await connect(mcp_env, agent_id, room="mcp-hostile", role="agent")
    person = await connect(mcp_env, person_id, room="mcp-hostile")
    try:
        with pytest.raises(ResponseError) as info:
            await agent.request("secrets.request_oauth_token",
                                {"from_participant_id": person.participant_id, "mcp": {"url": peer.url}, "timeout": 5})
        assert reason in str(info.value)
        with pytest.raises(asyncio.TimeoutError):
            await person.next_event("secrets.request_oauth_token", timeout=0.5)
    finally:
        await agent.close()
        await person.close()


async def test_production_mode_refuses_an_authorization_server_on_a_private_address(mcp_env: McpEnv) -> None:
    """allow_insecure_loopback off: the operator trusts the (loopback) MCP server itself, but
    the authorization server its metadata names is on a private address: refused before
    anyone is asked, and nothing is fetched from it."""
    peer = mcp_env.hostile["private"]
    await peer.wait_ready()
    prod = Server(mcp_env.base / "prod", env={
        "ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "0", "ROOMSVC_SERVER_PUBLIC_URL": "https://roomsvc.example",
        "ROOMSVC_MCP_TRUSTED_SERVERS": "http://127.0.0.1:*",
    }).start()
    try:
        agent_id, person_id = fresh("agent", "erin")
        agent = await NativeClient.connect(prod.ws_url("prod"), prod.token(agent_id, "prod", api=("secrets",), role="agent"))
        person = await NativeClient.connect(prod.ws_url("prod"), prod.token(person_id, "prod", api=("secrets",)))
        try:
            for url, refusal in ((peer.url, "loopback or private"), (mcp_env.mcp.url, "must use https")):
                with pytest.raises(ResponseError) as info:
                    await agent.request("secrets.request_oauth_token",
                                        {"from_participant_id": person.participant_id, "mcp": {"url": url}, "timeout": 5})
                assert info.value.name == "oauth_error" and refusal in str(info.value), info.value
            # an MCP server the operator did not list is refused itself
            with pytest.raises(ResponseError, match="must use https"):
                await agent.request("secrets.request_oauth_token", {
                    "from_participant_id": person.participant_id, "mcp": {"url": "http://127.0.0.3:9/mcp"}, "timeout": 5})
            # a *name* that resolves to loopback (here 0x7f000001, read as 127.0.0.1 by the system
            # resolver; an attacker's DNS could do the same with any name) is refused before connecting
            with pytest.raises(ResponseError) as info:
                await agent.request("secrets.request_oauth_token", {
                    "from_participant_id": person.participant_id, "mcp": {"url": "https://0x7f000001:9/mcp"}, "timeout": 5})
            assert info.value.name == "oauth_error", info.value
            assert "0x7f000001 resolves only to loopback or private addresses" in str(info.value), info.value
            with pytest.raises(asyncio.TimeoutError):
                await person.next_event("secrets.request_oauth_token", timeout=0.5)
        finally:
            await agent.close()
            await person.close()
    finally:
        prod.stop()


async def test_a_pre_registered_connector_is_used_and_nothing_is_registered(mcp_env: McpEnv) -> None:
    """A connector whose issuer is the MCP server's authorization server comes first in the
    registration order: its client (roomsvc-web, with a secret) is used, no registration."""
    await mcp_env.mcp.wait_ready()
    connectors = mcp_env.base / "connectors-pre"
    connectors.mkdir(exist_ok=True)
    (connectors / "upstream.toml").write_text(
        f'issuer = "{mcp_env.provider.issuer}"\nclient_id = "roomsvc-web"\nclient_secret_env = "MCP_TEST_SECRET"\n')
    before = (await mcp_env.stats())["registration"]
    srv = Server(mcp_env.base / "pre", env={"ROOMSVC_OAUTH_CONNECTORS_DIR": str(connectors),
                                           "MCP_TEST_SECRET": "roomsvc-web-secret"},
                 args=["--port", str(mcp_env.connector_port)]).start()
    try:
        agent_id, person_id = fresh("agent", "frank")
        agent = await NativeClient.connect(srv.ws_url("pre"), srv.token(agent_id, "pre", api=("secrets",), role="agent"))
        person = await NativeClient.connect(srv.ws_url("pre"), srv.token(person_id, "pre", api=("secrets",)))
        try:
            task = asyncio.get_running_loop().create_task(agent.request(
                "secrets.request_oauth_token",
                {"from_participant_id": person.participant_id, "mcp": {"url": mcp_env.mcp.url}, "timeout": 30}, timeout=40))
            push = (await person.next_event("secrets.request_oauth_token", timeout=15))["data"]
            assert push["request"]["connector"] == "upstream" and push["request"]["oauth"]["client_id"] == "roomsvc-web"
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                status, page = await finish(browser, await consent(browser, await open_link(browser, push["start_url"]), "frank-up"))
                assert status == 200, page
            token = (await task)["access_token"]
            assert claims(token)["aud"] == mcp_env.mcp.url and claims(token)["client_id"] == "roomsvc-web"
        finally:
            await agent.close()
            await person.close()
        # roomsvc's Client ID Metadata Document (used where an authorization server supports them)
        async with aiohttp.ClientSession() as s, s.get(f"{srv.url}/oauth/client-metadata.json") as r:
            doc = await r.json()
        assert doc["client_id"] == f"{srv.url}/oauth/client-metadata.json"
        assert doc["redirect_uris"] == [f"{srv.url}/oauth/callback"] and "scope" not in doc
    finally:
        srv.stop()
    assert (await mcp_env.stats())["registration"] == before
