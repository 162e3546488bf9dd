"""Attacks on the flow: each one fails with nothing stored and at most one token request
seen by the provider."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

import aiohttp
import pytest

from tests.oauth.conftest import OAuthEnv
from tests.oauth.flows import (
    ask,
    consent,
    error_of,
    finish,
    open_link,
    query,
    stored,
    with_query,
)
from tests.support.inprocess import InProcessServer
from tests.support.native_client import NativeClient
from tests.support.server import Server


@contextlib.asynccontextmanager
async def pair(env: OAuthEnv, server: Server | InProcessServer | None = None) -> AsyncIterator[tuple[NativeClient, NativeClient, str]]:
    agent_id, person_id = env.ids("agent", "victim")
    agent = await env.connect(agent_id, role="agent", server=server)
    person = await env.connect(person_id, server=server)
    try:
        yield agent, person, person_id
    finally:
        await agent.close()
        await person.close()


@contextlib.asynccontextmanager
async def token_requests(env: OAuthEnv, *, at_most: int) -> AsyncIterator[None]:
    before = (await env.stats())["token"]["authorization_code"]
    yield
    after = (await env.stats())["token"]["authorization_code"]
    assert after - before <= at_most, f"{after - before} token requests"


async def _callback_url(env: OAuthEnv, browser: aiohttp.ClientSession, agent: NativeClient, person: NativeClient,
                        login: str, **extra: Any) -> tuple[Any, str]:
    task, push = await ask(agent, person, **extra)
    return task, await consent(browser, await open_link(browser, push["start_url"]), login)


async def test_a_replayed_callback_is_refused(oauth_env: OAuthEnv, browser: aiohttp.ClientSession) -> None:
    async with pair(oauth_env) as (agent, person, person_id):
        async with token_requests(oauth_env, at_most=1):
            task, callback = await _callback_url(oauth_env, browser, agent, person, person_id)
            assert (await finish(browser, callback))[0] == 200
            await task
            version = (await person.request("secrets.list"))["secrets"][0]["version"]
            status, page = await finish(browser, callback)
            assert status == 404 and "already used" in page
        # the replay stored nothing new
        assert (await person.request("secrets.list"))["secrets"][0]["version"] == version


async def test_a_callback_with_another_flows_state_is_refused(oauth_env: OAuthEnv) -> None:
    async with pair(oauth_env) as (agent, person, person_id), pair(oauth_env) as (agent2, person2, person2_id):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as victim_browser, \
                aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other_browser:
            async with token_requests(oauth_env, at_most=0):
                task, callback = await _callback_url(oauth_env, victim_browser, agent, person, person_id)
                task2, push2 = await ask(agent2, person2)
                other_state = query(await open_link(other_browser, push2["start_url"]))["state"]
                # the victim's code with the other flow's state, in the victim's browser
                status, _ = await finish(victim_browser, with_query(callback, state=other_state))
                assert status == 403
                assert await error_of(task2) == "permission_denied"
            assert not await stored(person2) and not await stored(person)
            task.cancel()


async def test_an_expired_state_is_refused(oauth_env: OAuthEnv, fake_time_server: InProcessServer,
                                          browser: aiohttp.ClientSession) -> None:
    server = fake_time_server
    async with pair(oauth_env, server) as (agent, person, person_id):
        async with token_requests(oauth_env, at_most=0):
            task, callback = await _callback_url(oauth_env, browser, agent, person, person_id)
            assert server.runtime is not None
            server.clock.advance(server.runtime.settings.oauth.state_ttl + 1)  # past the state's lifetime
            status, page = await finish(browser, callback)
            assert status == 504 and "state_ttl" in page
            assert await error_of(task) == "timeout"
        assert not await stored(person)


@pytest.mark.parametrize("iss", [None, "http://127.0.0.1:1", "{issuer}/"])
async def test_a_missing_or_mismatched_iss_is_refused(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession, iss: str | None
) -> None:
    async with pair(oauth_env) as (agent, person, person_id):
        async with token_requests(oauth_env, at_most=0):
            task, callback = await _callback_url(oauth_env, browser, agent, person, person_id)
            bad = with_query(callback, iss=iss.format(issuer=oauth_env.issuer) if iss else None)
            status, page = await finish(browser, bad)
            assert status == 403 and "issuer" in page
            assert await error_of(task) == "permission_denied"
            # the genuine callback cannot be used afterwards either
            assert (await finish(browser, callback))[0] == 404
        assert not await stored(person)


async def test_a_callback_in_a_browser_that_did_not_open_the_start_link_is_refused(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with pair(oauth_env) as (agent, person, person_id):
        async with token_requests(oauth_env, at_most=0):
            task, callback = await _callback_url(oauth_env, browser, agent, person, person_id)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
                status, page = await finish(other, callback)
            assert status == 403 and "did not open" in page
            assert await error_of(task) == "permission_denied"
        assert not await stored(person)


async def test_a_reused_start_link_is_refused(oauth_env: OAuthEnv, browser: aiohttp.ClientSession) -> None:
    async with pair(oauth_env) as (agent, person, person_id):
        async with token_requests(oauth_env, at_most=0):
            task, push = await ask(agent, person)
            await open_link(browser, push["start_url"])
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker:
                async with attacker.get(push["start_url"], allow_redirects=False) as r:
                    assert r.status == 404 and "Location" not in r.headers
                    assert not [c for c in attacker.cookie_jar if c.key.startswith("roomsvc_oauth_")]
            task.cancel()
        assert not await stored(person)


async def test_a_consent_answered_by_another_participant_is_refused(oauth_env: OAuthEnv) -> None:
    async with pair(oauth_env) as (agent, person, person_id):
        intruder = await oauth_env.connect(oauth_env.ids("intruder")[0])
        try:
            async with token_requests(oauth_env, at_most=0):
                task, push = await ask(agent, person, timeout=3)
                request_id = push["request_id"]
                for op, data in (
                    ("secrets.provide_oauth_authorization", {"request_id": request_id, "code": "stolen"}),
                    ("secrets.reject_oauth_authorization", {"request_id": request_id, "error": "no"}),
                    ("secrets.provide_oauth_authorization", {"request_id": request_id, "error": "no"}),
                ):
                    assert await error_of(intruder.request(op, data)) == "permission_denied"
                # the agent cannot answer its own request either
                assert await error_of(agent.request("secrets.provide_oauth_authorization",
                                                    {"request_id": request_id, "code": "x"})) == "permission_denied"
                # the participant asked can decline
                await person.request("secrets.reject_oauth_authorization", {"request_id": request_id, "error": "not now"})
                assert await error_of(task) == "rejected"
            assert not await stored(person)
        finally:
            await intruder.close()


async def test_an_inline_config_with_endpoints_not_allowed_is_refused(oauth_env: OAuthEnv) -> None:
    issuer = oauth_env.issuer
    async with pair(oauth_env) as (agent, person, person_id):
        async with token_requests(oauth_env, at_most=0):
            for oauth in (
                # not on oauth.inline_endpoints
                {"client_id": "roomsvc-native", "authorization_endpoint": "http://127.0.0.1:1/auth",
                 "token_endpoint": f"{issuer}/token", "scopes": ["openid"]},
                {"client_id": "roomsvc-native", "authorization_endpoint": f"{issuer}/auth",
                 "token_endpoint": "http://127.0.0.1:1/token", "scopes": ["openid"]},
            ):
                data = {"oauth": oauth, "from_participant_id": person.participant_id}
                assert await error_of(agent.request("secrets.request_oauth_token", data)) == "permission_denied"
            assert person.events.empty()
    # a secrets grant whose request_oauth_token list does not admit the client
    restricted_id, person_id2 = oauth_env.ids("restricted", "victim")
    grant = {"secrets": {"request_oauth_token": [{"endpoint": f"{issuer}/auth", "client_id": "someone-else"}]}}
    restricted = await oauth_env.connect(restricted_id, api=grant)
    person2 = await oauth_env.connect(person_id2)
    try:
        inline = {"client_id": "roomsvc-native", "authorization_endpoint": f"{issuer}/auth",
                  "token_endpoint": f"{issuer}/token", "scopes": ["openid"]}
        for data in ({"oauth": inline}, {"connector": "oidc"}):
            data["from_participant_id"] = person2.participant_id
            assert await error_of(restricted.request("secrets.request_oauth_token", data)) == "permission_denied"
        assert person2.events.empty()
    finally:
        await restricted.close()
        await person2.close()


async def test_an_allowed_inline_config_runs_the_flow(oauth_env: OAuthEnv, browser: aiohttp.ClientSession) -> None:
    issuer = oauth_env.issuer
    inline = {"client_id": "roomsvc-native", "authorization_endpoint": f"{issuer}/auth",
              "token_endpoint": f"{issuer}/token", "scopes": ["openid"], "no_pkce": True}
    grant_ = {"secrets": {"request_oauth_token": [{"endpoint": f"{issuer}/*", "client_id": "roomsvc-native"}]}}
    agent_id, person_id = oauth_env.ids("agent", "kim")
    agent = await oauth_env.connect(agent_id, api=grant_)
    person = await oauth_env.connect(person_id)
    try:
        task, push = await ask(agent, person, connector=None, oauth=inline)
        authorize = await open_link(browser, push["start_url"])
        assert query(authorize)["code_challenge_method"] == "S256"  # no_pkce from a request is ignored
        assert (await finish(browser, await consent(browser, authorize, person_id)))[0] == 200
        grant = await task
        assert grant["credential"]["id"].startswith("oauth:")
        assert (await oauth_env.userinfo(grant["access_token"]))[0] == 200
        # later requests cannot point the stored credential at other endpoints
        again = await agent.request("secrets.request_oauth_token", {
            "oauth": {**inline, "token_endpoint": f"{issuer}/elsewhere"}, "from_participant_id": person.participant_id,
        })
        assert again["access_token"] == grant["access_token"]
    finally:
        await agent.close()
        await person.close()
