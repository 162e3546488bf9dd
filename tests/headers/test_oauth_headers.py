"""Header injection with a real OAuth credential from the real test provider: the proxy in
front of the provider's userinfo endpoint keeps answering 200 across token expiry."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.headers.test_header_injection import Proxy
from tests.oauth.conftest import ACCESS_TOKEN_TTL, OAuthEnv
from tests.oauth.flows import rewrite_credential, run_flow

ROOM = "room1"


async def test_proxy_in_front_of_userinfo_survives_token_expiry(oauth_env: OAuthEnv, browser: aiohttp.ClientSession) -> None:
    async with oauth_env.agent_and_person("erin", agent_name="toolkit", agent_role="tool") as (tool_id, person_id, tool, person):
        # the person grants the toolkit a credential: the person's, delegated to the toolkit
        grant, _ = await run_flow(browser, tool, person, person_id, delegate_to=tool_id)
        assert (grant["credential"]["owner"], grant["credential"]["delegated_to"]) == (person_id, tool_id)
        spec = f"Authorization:Bearer {{{person_id}/oidc}}"
        token = oauth_env.server.token(tool_id, ROOM, api=("secrets",), role="tool")
        proxy = Proxy(oauth_env.server, token, oauth_env.issuer, [spec],
                      env={"ROOMSVC_PROXY_CACHE_TTL": "60", "ROOMSVC_PROXY_REFRESH_MARGIN": "1"}, room=ROOM)
        try:
            before = (await oauth_env.stats())["token"].get("refresh_token", 0)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{proxy.url}/me") as r:
                    assert r.status == 200 and (await r.json())["sub"] == person_id
                # a real sleep, and the behaviour under test: the access token expires at the
                # real provider (a subprocess whose clock we do not control), and the proxy
                # and roomsvc (subprocesses too) must notice and refresh on their own
                await asyncio.sleep(ACCESS_TOKEN_TTL + 1)
                async with session.get(f"{proxy.url}/me") as r:
                    assert r.status == 200 and (await r.json())["sub"] == person_id
            after = (await oauth_env.stats())["token"].get("refresh_token", 0)
            assert after == before + 1  # the proxy re-resolved and roomsvc refreshed exactly once
        finally:
            log = proxy.stop()
        assert grant["access_token"] not in log

        # the same credential through the headers endpoint: the current access token only
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{oauth_env.server.url}/v1/rooms/{ROOM}/headers",
                                    json={"header_secrets": [spec], "destination": f"{oauth_env.issuer}/me"},
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                body = await r.json()
        header = body["headers"][0]
        assert header["value"].startswith("Bearer ") and header["allowed_hosts"] == ["127.0.0.1"]
        assert header["expires_at"] is not None
        status, info = await oauth_env.userinfo(header["value"].removeprefix("Bearer "))
        assert status == 200 and info["sub"] == person_id

        # a stored access token with CR/LF in it is refused at render time, naming only the placeholder
        def poison(credential: dict) -> None:
            credential["access_token"] += "\r\nSet-Cookie: stolen=1"

        rewrite_credential(oauth_env.server, ROOM, person_id, poison)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{oauth_env.server.url}/v1/rooms/{ROOM}/headers",
                                    json={"header_secrets": [spec], "destination": f"{oauth_env.issuer}/me"},
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 400
                error = (await r.json())["error"]
        assert f"{{{person_id}/oidc}}" in error["message"] and "control characters" in error["message"]
        assert "Set-Cookie" not in json.dumps(error)


async def test_a_proxy_for_a_connector_credential_refuses_hosts_outside_its_allow_list(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("frank", agent_name="toolkit", agent_role="tool") as (tool_id, person_id, tool, person):
        await run_flow(browser, tool, person, person_id, delegate_to=tool_id)
        token = oauth_env.server.token(tool_id, ROOM, api=("secrets",), role="tool")
        # the connector allows 127.0.0.1 only; "localhost" is another host name. The proxy sends
        # its upstream as the destination, so the server refuses and the proxy does not start.
        upstream = oauth_env.issuer.replace("127.0.0.1", "localhost")
        with pytest.raises(RuntimeError) as info:
            Proxy(oauth_env.server, token, upstream, [f"Authorization:Bearer {{{person_id}/oidc}}"], room=ROOM)
        assert "may not be sent to localhost" in str(info.value)
