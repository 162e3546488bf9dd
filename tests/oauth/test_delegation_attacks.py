"""Issue 10, section 2: delegation cannot write into someone else's namespace.

Each test performs an attack that worked on the code before the trust-model change, end
to end: real server, real websocket clients (native and MeshAgent), the CLI as a
subprocess, the real OpenID provider, and a cookie-keeping HTTP client as the browser.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from typing import Any, AsyncIterator

import aiohttp
import pytest

from roomsvc.domain.secret_requests import requested_secret_id
from roomsvc.transport.meshagent.packing import FileContent, JsonContent
from tests.meshagent.raw_client import RawClient
from tests.oauth.conftest import OAuthEnv, _token_with_api
from tests.oauth.flows import ask, consent, finish, open_link
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import REPO

ROOM = "room1"


@contextlib.asynccontextmanager
async def fresh_browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A browser with no provider session: each consent logs in as the account it names."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def consent_as(push: dict[str, Any], login: str) -> None:
    async with fresh_browser() as browser:
        status, page = await finish(browser, await consent(browser, await open_link(browser, push["start_url"]), login))
        assert status == 200, page


async def header(env: OAuthEnv, identity: str, spec: str) -> tuple[int, dict[str, Any]]:
    token = env.server.token(identity, ROOM, api=("secrets",))
    async with aiohttp.ClientSession() as s, s.post(
        f"{env.server.url}/v1/rooms/{ROOM}/headers", json={"header_secrets": [spec], "destination": f"{env.issuer}/me"},
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        return r.status, await r.json()


async def listed(client: NativeClient) -> list[tuple[str, str | None]]:
    return sorted((s["id"], s["delegated_to"]) for s in (await client.request("secrets.list"))["secrets"])


async def cli(env: OAuthEnv, token: str, *args: str) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    environ.update({"ROOMSVC_URL": env.server.url, "ROOMSVC_TOKEN": token})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "roomsvc", *args, cwd=REPO, env=environ,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


# -- request_oauth_token with delegate_to ----------------------------------------------------------


@pytest.mark.parametrize("requester", ["native", "cli"])
async def test_an_oauth_consent_delegated_to_a_victim_never_replaces_the_victims_credential(
    oauth_env: OAuthEnv, requester: str
) -> None:
    agent_id, victim_id, mallory_id, accomplice_id = oauth_env.ids("agent", "vera", "mallory", "accomplice")
    agent = await oauth_env.connect(agent_id, role="agent")
    victim = await oauth_env.connect(victim_id)
    accomplice = await oauth_env.connect(accomplice_id)
    try:
        # the victim connects her own account for an agent: her credential, in her namespace
        task, push = await ask(agent, victim)
        await consent_as(push, "vera-account")
        await task
        assert await listed(victim) == [("oidc", None)]

        # mallory asks her accomplice for a token "delegated to" the victim
        data = {"connector": "oidc", "from_participant_id": accomplice.participant_id, "delegate_to": victim_id,
                "timeout": 30}
        if requester == "native":
            mallory = await oauth_env.connect(mallory_id, role="agent")
            asked = asyncio.get_running_loop().create_task(mallory.request("secrets.request_oauth_token", data, timeout=40))
        else:
            token = _token_with_api(oauth_env.server, mallory_id, ROOM, "agent", {"secrets": {}})
            asked = asyncio.get_running_loop().create_task(cli(
                oauth_env, token, "room", "secret", "oauth", "--room", ROOM, "--connector", "oidc",
                "--from-participant-id", accomplice.participant_id, "--delegate-to", victim_id, "--timeout", "30"))
        push = (await accomplice.next_event("secrets.request_oauth_token", timeout=10))["data"]
        await consent_as(push, "mallory-account")
        result = await asked
        if requester == "native":
            await mallory.close()
            credential = result["credential"]
            assert (credential["owner"], credential["delegated_to"]) == (accomplice_id, victim_id)
        else:
            assert result[0] == 0, result[2]

        # the victim's own credential is untouched: her headers still carry her own account
        assert await listed(victim) == [("oidc", None)]
        status, body = await header(oauth_env, victim_id, "Authorization:Bearer {oidc}")
        assert status == 200, body
        _, info = await oauth_env.userinfo(body["headers"][0]["value"].removeprefix("Bearer "))
        assert info["sub"] == "vera-account"
        # what mallory obtained is the accomplice's credential, usable by the victim only by naming it
        assert await listed(accomplice) == [("oidc", victim_id)]
        status, body = await header(oauth_env, victim_id, f"Authorization:Bearer {{{accomplice_id}/oidc}}")
        _, info = await oauth_env.userinfo(body["headers"][0]["value"].removeprefix("Bearer "))
        assert status == 200 and info["sub"] == "mallory-account"
        # and the person asked was told whose credential it would be and who could use it
        assert push["owner"] == accomplice_id
        assert push["usable_by"] == sorted([accomplice_id, mallory_id, victim_id])
    finally:
        for c in (agent, victim, accomplice):
            await c.close()


async def test_a_consent_for_another_account_revokes_the_replaced_grant_and_the_same_account_keeps_it(
    oauth_env: OAuthEnv,
) -> None:
    async with oauth_env.agent_and_person("rita") as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person)
        await consent_as(push, "rita-work")
        first = await task

        # the same account again, for another agent: the same grant at most providers, kept
        helper = await oauth_env.connect(oauth_env.ids("helper")[0], role="agent")
        try:
            task, push = await ask(helper, person)
            before = await oauth_env.stats()
            await consent_as(push, "rita-work")
            middle = await task
            assert (await oauth_env.stats())["revocation"] == before["revocation"]
            assert (await oauth_env.userinfo(first["access_token"]))[0] == 200
        finally:
            await helper.close()

        # another account replaces the credential at the same place: its old grant is revoked
        other = await oauth_env.connect(oauth_env.ids("other")[0], role="agent")
        try:
            task, push = await ask(other, person)
            before = await oauth_env.stats()
            await consent_as(push, "rita-home")
            second = await task
        finally:
            await other.close()
        after = await oauth_env.stats()
        assert second["credential"]["subject"] != first["credential"]["subject"]
        assert after["revocation"] == before["revocation"] + 1
        assert after["grants_revoked"] >= before["grants_revoked"] + 1
        status, _ = await oauth_env.userinfo(middle["access_token"])
        assert status == 401  # the replaced grant's tokens are dead at the provider
        status, info = await oauth_env.userinfo(second["access_token"])
        assert status == 200 and info["sub"] == "rita-home"


# -- request_secret with delegate_to ----------------------------------------------------------------


async def _answer(accomplice: NativeClient, value: str) -> dict[str, Any]:
    push = (await accomplice.next_event("secrets.request_secret", timeout=10))["data"]
    await accomplice.request("secrets.provide_secret", {"request_id": push["request_id"], "text": value})
    return push


@pytest.mark.parametrize("requester", ["native", "meshagent", "cli"])
async def test_a_requested_secret_delegated_to_a_victim_cannot_plant_a_value_in_her_namespace(
    oauth_env: OAuthEnv, requester: str
) -> None:
    victim_id, mallory_id, accomplice_id = oauth_env.ids("vic", "mal", "acc")
    victim = await oauth_env.connect(victim_id)
    accomplice = await oauth_env.connect(accomplice_id)
    token = _token_with_api(oauth_env.server, mallory_id, ROOM, "agent", {"secrets": {}})
    request = {"url": "github", "type": "text/plain", "timeout": 20}
    try:
        loop = asyncio.get_running_loop()
        if requester == "native":
            mallory = await NativeClient.connect(oauth_env.server.ws_url(ROOM), token)
            asked = loop.create_task(mallory.request("secrets.request_secret", {
                **request, "from_participant_id": accomplice.participant_id, "delegate_to": victim_id}, timeout=30))
        elif requester == "meshagent":
            raw = await RawClient.connect(oauth_env.server.url, ROOM, token)
            asked = loop.create_task(raw.invoke("secrets", "request_secret", JsonContent({
                **request, "participant_id": accomplice.participant_id, "delegate_to": victim_id})))
        else:
            asked = loop.create_task(cli(oauth_env, token, "room", "secret", "request", "--room", ROOM,
                                         "--from-participant-id", accomplice.participant_id, "--secret-url", "github",
                                         "--type", "text/plain", "--delegate-to", victim_id, "--timeout", "20"))
        push = await _answer(accomplice, "gho_mallorys_own_account")
        result = await asked
        if requester == "native":
            assert (result["secret"]["owner"], result["secret"]["delegated_to"]) == (mallory_id, victim_id)
            await mallory.close()
        elif requester == "meshagent":
            assert isinstance(result, FileContent) and result.data == b"gho_mallorys_own_account"
            await raw.close()
        else:
            assert result[0] == 0, result[2]

        # nothing landed in the victim's namespace: her {github} placeholder finds nothing planted
        assert await listed(victim) == []
        status, body = await header(oauth_env, victim_id, "Authorization:Bearer {github}")
        assert status == 404, body
        # it is mallory's secret, delegated to the victim, reachable only when she asks for it by name
        secret_id = requested_secret_id("github", "text/plain")
        got = await victim.request("secrets.get", {"id": secret_id, "delegated_to": victim_id, "for_identity": mallory_id})
        assert base64.b64decode(got["value"]) == b"gho_mallorys_own_account"
        # the delegate may use it, not delete it
        with pytest.raises(ResponseError):
            await victim.request("secrets.delete", {"id": secret_id, "delegated_to": victim_id, "for_identity": mallory_id})
        # the person asked was told whose secret it would be and who could use it
        assert (push["owner"], push["usable_by"]) == (mallory_id, sorted([mallory_id, victim_id]))
    finally:
        await victim.close()
        await accomplice.close()


# -- delegated secrets never shadow the victim's own ------------------------------------------------


async def resolve_as(env: OAuthEnv, transport: str, identity: str, spec: str) -> tuple[str, str]:
    """(outcome, value) of resolving one header for ``identity`` over a transport."""
    token = env.server.token(identity, ROOM, api=("secrets",))
    if transport == "http":
        async with aiohttp.ClientSession() as s, s.post(
            f"{env.server.url}/v1/rooms/{ROOM}/headers", json={"header_secrets": [spec]},
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            body = await r.json()
            return ("ok", body["headers"][0]["value"]) if r.status == 200 else (body["error"]["name"], "")
    if transport == "native":
        client = await NativeClient.connect(env.server.ws_url(ROOM), token)
        try:
            result = await client.request("headers.resolve", {"header_secrets": [spec]})
            return "ok", result["headers"][0]["value"]
        except ResponseError as exc:
            return exc.name, ""
        finally:
            await client.close()
    code, out, err = await cli(env, token, "toolkit", "headers", "--room", ROOM, "--header-secret", spec)
    return ("ok", out) if code == 0 else (err, "")


@pytest.mark.parametrize("transport", ["http", "native", "cli"])
async def test_secrets_delegated_to_a_victim_never_change_what_her_own_placeholders_find(
    oauth_env: OAuthEnv, transport: str
) -> None:
    victim_id, mallory_id, trudy_id = oauth_env.ids("val", "mel", "tru")
    victim = await oauth_env.connect(victim_id)
    mallory = await oauth_env.connect(mallory_id)
    trudy = await oauth_env.connect(trudy_id)
    try:
        # the victim's own secret, found by its name
        await victim.request("secrets.set", {"id": "gh-token", "name": "github", "text": "victims-own-value"})
        outcome, value = await resolve_as(oauth_env, transport, victim_id, "X-Token:{github}")
        assert (outcome, "victims-own-value" in value) == ("ok", True)
        # mallory "delegates" a secret with that id to the victim: it must not win
        await mallory.request("secrets.set", {"id": "github", "text": "mallorys-value", "delegated_to": victim_id})
        outcome, value = await resolve_as(oauth_env, transport, victim_id, "X-Token:{github}")
        assert (outcome, "victims-own-value" in value, "mallorys-value" in value) == ("ok", True, False)
        # a second delegation of the same id must not make her lookup fail as ambiguous
        await trudy.request("secrets.set", {"id": "github", "text": "trudys-value", "delegated_to": victim_id})
        outcome, value = await resolve_as(oauth_env, transport, victim_id, "X-Token:{github}")
        assert (outcome, "victims-own-value" in value) == ("ok", True)
        # she can still use a delegated one on purpose, by naming its owner
        outcome, value = await resolve_as(oauth_env, transport, victim_id, f"X-Token:{{{trudy_id}/github}}")
        assert (outcome, "trudys-value" in value) == ("ok", True)
        # and a plain get of the id is hers alone: not found, not someone else's
        with pytest.raises(ResponseError) as caught:
            await victim.request("secrets.get", {"id": "github"})
        assert caught.value.name == "not_found"
    finally:
        for c in (victim, mallory, trudy):
            await c.close()
