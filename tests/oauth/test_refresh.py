"""Refresh against the real provider, which rotates refresh tokens and revokes the whole
grant when a rotated one is reused: a refresh race would show as a dead grant.

roomsvc decides to refresh by its own clock (the stored expiry minus oauth.refresh_margin),
so these tests run on the in-process server and move its fake clock past the expiry
instead of sleeping until it; the provider, which accepts a refresh at any time, stays
real. The two refresh tests run once per storage engine (SQLite, PostgreSQL with its
advisory lock). Expiry at the provider itself (whose clock we do not control) is covered end to end
by tests/headers/test_oauth_headers.py and the MeshAgent SDK scenario."""

from __future__ import annotations

import asyncio
import base64

import aiohttp

from tests.oauth.conftest import (
    ACCESS_TOKEN_TTL,
    CLIENT_SECRET,
    REFRESH_MARGIN,
    OAuthEnv,
)
from tests.oauth.flows import (
    ask,
    consent,
    error_of,
    finish,
    open_link,
    read_credential,
    revoke_at_provider,
    run_flow,
    stored,
)
from tests.support.inprocess import InProcessServer
from tests.support.native_client import NativeClient

#: far enough for a token to be within the refresh margin
EXPIRE = ACCESS_TOKEN_TTL - REFRESH_MARGIN + 0.3


async def _offline(agent: NativeClient, person_id: str) -> dict:
    return await agent.request("secrets.get_offline_oauth_token", {"connector": "oidc", "delegated_by": person_id}, timeout=30)


async def test_the_next_use_after_expiry_refreshes_and_the_new_token_works(
    oauth_env: OAuthEnv, fake_time_server_on: InProcessServer, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("gina", server=fake_time_server_on) as (agent_id, person_id, agent, person):
        first, _ = await run_flow(browser, agent, person, person_id)
        fake_time_server_on.clock.advance(EXPIRE)
        before = await oauth_env.stats()
        second = await _offline(agent, person_id)
        after = await oauth_env.stats()
        assert second["access_token"] != first["access_token"]
        assert after["token"]["refresh_token"] - before["token"]["refresh_token"] == 1
        assert (await oauth_env.userinfo(second["access_token"]))[0] == 200
        assert second["credential"]["version"] == first["credential"]["version"] + 1
        # the person reading the secret also gets the current access token (and only it)
        value = base64.b64decode((await person.request("secrets.get", {"id": "oidc"}))["value"]).decode()
        assert value == second["access_token"]


async def test_fifty_concurrent_uses_of_an_expired_credential_refresh_once_and_the_grant_lives(
    oauth_env: OAuthEnv, fake_time_server_on: InProcessServer, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("hana", server=fake_time_server_on) as (agent_id, person_id, agent, person):
        await run_flow(browser, agent, person, person_id)
        for _ in range(2):  # twice: the refresh token rotated by the first round must still work
            fake_time_server_on.clock.advance(EXPIRE)
            before = await oauth_env.stats()
            answers = await asyncio.gather(*(_offline(agent, person_id) for _ in range(50)))
            after = await oauth_env.stats()
            assert after["token"]["refresh_token"] - before["token"]["refresh_token"] == 1
            assert after["grants_revoked"] == before["grants_revoked"]
            assert len({a["access_token"] for a in answers}) == 1
            assert (await oauth_env.userinfo(answers[0]["access_token"]))[0] == 200


async def test_a_grant_revoked_at_the_provider_gives_reauth_required_and_the_owner_is_told(
    oauth_env: OAuthEnv, fake_time_server: InProcessServer, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("ivan", server=fake_time_server) as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person)
        callback = await consent(browser, await open_link(browser, push["start_url"]), person_id)
        assert (await finish(browser, callback))[0] == 200
        await task
        # the person revokes the grant at the provider (what its account page would do)
        stored_cred = read_credential(fake_time_server, "room1", person_id)
        assert stored_cred["refresh_token"] and stored_cred["status"] == "active"
        before = await oauth_env.stats()
        assert await revoke_at_provider(
            oauth_env.issuer, stored_cred["refresh_token"], "refresh_token", "roomsvc-web", CLIENT_SECRET
        ) == 200
        assert (await oauth_env.stats())["grants_revoked"] == before["grants_revoked"] + 1
        fake_time_server.clock.advance(EXPIRE)
        assert await error_of(_offline(agent, person_id)) == "reauth_required"
        notice = await person.next_event("secrets.oauth_reauth_required")
        assert notice["data"]["id"] == "oidc" and notice["data"]["connector"] == "oidc"
        # still reauth_required, without another refresh attempt
        before = await oauth_env.stats()
        assert await error_of(person.request("secrets.get", {"id": "oidc"})) == "reauth_required"
        assert (await oauth_env.stats())["token"] == before["token"]
        # a new request asks the person again, and then works
        task, push = await ask(agent, person)
        assert (await finish(browser, await consent(browser, await open_link(browser, push["start_url"]), person_id)))[0] == 200
        assert (await oauth_env.userinfo((await task)["access_token"]))[0] == 200


async def test_deleting_a_credential_revokes_the_grant_at_the_provider(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("judy") as (agent_id, person_id, agent, person):
        grant, _ = await run_flow(browser, agent, person, person_id)
        before = await oauth_env.stats()
        assert (await person.request("secrets.delete", {"id": "oidc"}))["deleted"] == "oidc"
        after = await oauth_env.stats()
        assert after["revocation"] - before["revocation"] == 1
        assert after["grants_revoked"] - before["grants_revoked"] == 1
        # revoking the refresh token took its access tokens with it
        assert (await oauth_env.userinfo(grant["access_token"]))[0] == 401
        assert not await stored(person)
