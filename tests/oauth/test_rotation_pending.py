"""Key rotation re-wraps what a pending consent keeps encrypted (its PKCE verifier), so an
old key can be retired while a person is still consenting, and the consent completes."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.oauth.conftest import OAuthEnv
from tests.oauth.flows import ask, consent, finish, open_link


async def test_a_consent_pending_across_rotation_and_retirement_completes(oauth_env: OAuthEnv, browser: aiohttp.ClientSession) -> None:
    server = oauth_env.server
    operator = server.operator_token()

    async def cli(*args: str):  # off the event loop, so the clients keep answering heartbeats
        return await asyncio.to_thread(server.cli, *args, token=operator)

    async with oauth_env.agent_and_person("rita") as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person)
        old_keys = {k["id"] for k in json.loads((await cli("keys", "status")).stdout)}

        rotated = await cli("keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        for key in old_keys:
            retired = await cli("keys", "retire", key)
            assert retired.returncode == 0, retired.stderr  # nothing, the pending flow included, still uses it
        status = json.loads((await cli("keys", "status")).stdout)
        assert {k["id"] for k in status}.isdisjoint(old_keys)

        callback = await consent(browser, await open_link(browser, push["start_url"]), person_id)
        code, page = await finish(browser, callback)
        assert code == 200, page
        grant = await task
        status, info = await oauth_env.userinfo(grant["access_token"])
        assert status == 200 and info["sub"] == person_id
