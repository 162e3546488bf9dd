"""End to end: an agent gets a token from a person through roomsvc's start link, the
provider's login and consent, and roomsvc's callback."""

from __future__ import annotations

import base64

import aiohttp

from tests.oauth.conftest import OAuthEnv
from tests.oauth.flows import ask, consent, error_of, finish, open_link, query, run_flow, stored


async def test_agent_gets_a_token_the_provider_accepts_and_it_is_stored_for_the_person(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("alice") as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person)
        assert push["request"]["connector"] == "oidc"
        assert push["start_url"].startswith(f"{oauth_env.server.url}/oauth/start?t=")
        assert "client_secret" not in str(push) and "challenge" not in push
        authorize = await open_link(browser, push["start_url"])
        params = query(authorize)
        assert authorize.startswith(f"{oauth_env.issuer}/auth?")
        assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
        assert params["redirect_uri"] == f"{oauth_env.server.url}/oauth/callback"
        assert len(params["state"]) >= 22  # >= 128 bits
        cookies = [c for c in browser.cookie_jar if c.key.startswith("roomsvc_oauth_")]
        assert len(cookies) == 1 and cookies[0]["httponly"] and cookies[0]["samesite"] == "Lax"
        callback = await consent(browser, authorize, login=person_id)
        assert query(callback)["iss"] == oauth_env.issuer
        status, page = await finish(browser, callback)
        assert status == 200 and "Connected" in page and person_id in page
        grant = await task
        token = grant["access_token"]
        assert token not in page
        assert grant["credential"]["owner"] == person_id and grant["credential"]["subject"] == person_id
        status, info = await oauth_env.userinfo(token)
        assert status == 200 and info["sub"] == person_id
        # stored as the person's room secret of kind oauth; reading it gives the access token only
        listed = (await person.request("secrets.list"))["secrets"]
        assert [(s["id"], s["kind"]) for s in listed] == [("oidc", "oauth")]
        value = base64.b64decode((await person.request("secrets.get", {"id": "oidc"}))["value"]).decode()
        assert value == token
        # set cannot overwrite an OAuth credential
        assert await error_of(person.request("secrets.set", {"id": "oidc", "text": "x"})) == "permission_denied"
        # the person heard that the request ended
        ended = await person.next_event("secrets.request_ended")
        assert ended["data"]["outcome"] == "completed"


async def test_the_same_agent_reuses_the_token_and_another_agent_makes_the_person_consent_again(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    a1_id, a2_id, person_id = oauth_env.ids("agent1", "agent2", "bob")
    a1 = await oauth_env.connect(a1_id, role="agent")
    a2 = await oauth_env.connect(a2_id, role="agent")
    person = await oauth_env.connect(person_id)
    try:
        first, _ = await run_flow(browser, a1, person, person_id)
        before = await oauth_env.stats()
        again = await a1.request("secrets.request_oauth_token", {"connector": "oidc", "from_participant_id": person.participant_id})
        assert again["access_token"] == first["access_token"]
        assert person.events.empty() or all(
            e["type"] != "secrets.request_oauth_token" for e in list(person.events._queue)  # type: ignore[attr-defined]
        )
        assert (await oauth_env.stats())["token"] == before["token"]
        # offline: only for identities the consent covers
        offline = await a1.request("secrets.get_offline_oauth_token", {"connector": "oidc", "delegated_by": person_id})
        assert offline["access_token"] == first["access_token"]
        none = await a2.request("secrets.get_offline_oauth_token", {"connector": "oidc", "delegated_by": person_id})
        assert none == {"access_token": None}
        # another agent: the person is asked again (the browser session skips the login page)
        task, push = await ask(a2, person)
        status, _ = await finish(browser, await consent(browser, await open_link(browser, push["start_url"]), person_id))
        assert status == 200
        second = await task
        assert set(second["credential"]["covers"]) == {a1_id, a2_id}
        # now both are covered
        again = await a1.request("secrets.get_offline_oauth_token", {"connector": "oidc", "delegated_by": person_id})
        assert again["access_token"] == second["access_token"]
    finally:
        for c in (a1, a2, person):
            await c.close()


async def test_delegate_to_stores_the_persons_credential_delegated_to_the_named_one(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    agent_id, person_id, worker_id = oauth_env.ids("agent", "carol", "worker")
    agent = await oauth_env.connect(agent_id, role="agent")
    person = await oauth_env.connect(person_id)
    worker = await oauth_env.connect(worker_id, role="agent")
    try:
        grant, _ = await run_flow(browser, agent, person, person_id, delegate_to=worker_id)
        # the person who consented owns it; the worker may use it; nothing lands in the worker's namespace
        assert (grant["credential"]["owner"], grant["credential"]["delegated_to"]) == (person_id, worker_id)
        assert not await stored(worker)
        mine = (await person.request("secrets.list"))["secrets"]
        assert [(s["id"], s["delegated_to"]) for s in mine] == [("oidc", worker_id)]
        # the worker asks for the delegated credential explicitly
        offline = await worker.request("secrets.get_offline_oauth_token", {"connector": "oidc", "delegated_to": worker_id})
        assert offline["access_token"] == grant["access_token"]
        assert (await worker.request("secrets.get_offline_oauth_token", {"connector": "oidc"}))["access_token"] is None
    finally:
        for c in (agent, person, worker):
            await c.close()


async def test_a_person_who_declines_at_the_provider_ends_the_request_with_rejected(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("dave") as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person)
        authorize = await open_link(browser, push["start_url"])
        params = query(authorize)
        denied = f"{params['redirect_uri']}?error=access_denied&state={params['state']}&iss={oauth_env.issuer}"
        status, page = await finish(browser, denied)
        assert status == 403 and "declined" in page
        assert await error_of(task) == "rejected"
        assert not await stored(person)


async def test_a_timeout_ends_the_request_and_kills_the_start_link(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("erin") as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person, timeout=0.5)
        assert await error_of(task) == "timeout"
        async with browser.get(push["start_url"], allow_redirects=False) as r:
            assert r.status == 404
        assert (await person.next_event("secrets.request_ended"))["data"]["outcome"] == "expired"


async def test_a_public_client_connector_with_explicit_endpoints_works_with_pkce_only(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("fay") as (agent_id, person_id, agent, person):
        grant, _ = await run_flow(browser, agent, person, person_id, connector="oidc-public")
        assert (await oauth_env.userinfo(grant["access_token"]))[0] == 200
        assert await stored(person, "oidc-public")


async def test_a_person_consents_in_real_headless_chromium(oauth_env: OAuthEnv) -> None:
    import asyncio
    import json
    import shutil
    from pathlib import Path

    from tests.oauth.conftest import OIDC_DIR
    from tests.support.peers import need

    need(Path("/usr/bin/chromium").exists() or shutil.which("chromium") is not None,
         "Debian's chromium is not installed (apt-get install chromium)")
    need((OIDC_DIR / "node_modules" / "playwright-core").is_dir(), "playwright-core missing: run scripts/setup-peers")
    async with oauth_env.agent_and_person("lena") as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person)
        proc = await asyncio.create_subprocess_exec(
            "node", str(Path(__file__).with_name("browser_consent.mjs")), push["start_url"], person_id,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        seen = json.loads(out.decode().strip().splitlines()[-1])
        assert seen["status"] == 200 and seen["heading"] == "Connected" and person_id in seen["text"]
        # before going to the provider the person read who asks and whose credential it will be
        assert agent_id in seen["startText"] and "will belong to" in seen["startText"]
        assert person_id in seen["startText"]
        # the start link bound the browser with an HttpOnly, SameSite=Lax cookie; the callback cleared it
        assert seen["cookiesAtProvider"] == [{"httpOnly": True, "sameSite": "Lax", "path": "/oauth/callback"}]
        assert seen["cookiesAfter"] == []
        grant = await task
        assert grant["access_token"] not in seen["text"]
        assert (await oauth_env.userinfo(grant["access_token"])) == (200, {"sub": person_id})
        assert await stored(person)


async def test_no_token_code_state_or_client_secret_reaches_the_server_log(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    from tests.oauth.conftest import CLIENT_SECRET
    from tests.oauth.flows import read_credential

    async with oauth_env.agent_and_person("oscar") as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person)
        callback = await consent(browser, await open_link(browser, push["start_url"]), person_id)
        assert (await finish(browser, callback))[0] == 200
        await finish(browser, callback)  # a refused replay is logged too
        grant = await task
        stored_cred = read_credential(oauth_env.server, "room1", person_id)
        params = query(callback)
        sentinels = {
            "access token": grant["access_token"], "refresh token": stored_cred["refresh_token"],
            "code": params["code"], "state": params["state"], "client secret": CLIENT_SECRET,
            "start ticket": push["start_url"].split("t=")[1],
        }
        log = oauth_env.server.stderr() + "\n".join(oauth_env.server.banner)
        assert "/oauth/callback" in log  # the access log saw the requests...
        for what, value in sentinels.items():
            assert value not in log, f"the {what} is in the server log"  # ...but never their queries
