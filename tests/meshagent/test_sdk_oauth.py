"""OAuth tokens with the real MeshAgent SDK 0.44 and the real test provider (npm oidc-provider).

The provider and an OAuth-configured roomsvc come from tests/oauth/conftest.py
(``oauth_env``: connector ``oidc`` = the provider's confidential client ``roomsvc-web``,
whose registered redirect URIs include the consenting app's own, ``APP_REDIRECT``;
access tokens live 4 s and are refreshed 1 s early). The SDK runs in
drivers/oauth_scenario.py and drivers/oauth_mixed_scenario.py, one process each.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from roomsvc.crypto.tokens import mint
from roomsvc.domain.principal import build_claims
from roomsvc.transport.meshagent.framing import encode_packets
from roomsvc.transport.meshagent.packing import EmptyContent, JsonContent, pack, unpack
from tests.meshagent.raw_client import RawClient
from tests.meshagent.sdk_peer import Driver, need_sdk, run_driver
from tests.oauth.conftest import (  # noqa: F401  (browser and oauth_env are fixtures)
    ACCESS_TOKEN_TTL,
    APP_REDIRECT,
    CLIENT_SECRET,
    REFRESH_MARGIN,
    OAuthEnv,
    browser,
    oauth_env,
)
from tests.oauth.flows import consent, finish, open_link
from tests.support.native_client import ResponseError

ROOM = "ma-oauth"
CLIENT_ID = "roomsvc-web"
FLOW_DRIVER_DIR = str(Path(__file__).resolve().parents[1] / "peers" / "oidc")
#: long enough for a token to be within the refresh margin
EXPIRE = ACCESS_TOKEN_TTL - REFRESH_MARGIN + 0.3


def token(env: OAuthEnv, identity: str, *, role: str = "user", api: dict[str, Any] | None = None) -> str:
    claims = build_claims(identity=identity, room=ROOM, role=role, api=api or {"secrets": {}},
                          issued_at=int(time.time()), ttl=600)
    return mint(env.server.keyring(), claims)


def allow(issuer: str, client_id: str) -> dict[str, Any]:
    """A secrets grant whose request_oauth_token allow-list admits one client of the provider."""
    return {"secrets": {"request_oauth_token": [{"endpoint": f"{issuer}/*", "client_id": client_id}]}}


def scenario_config(env: OAuthEnv, **extra: Any) -> dict[str, Any]:
    return {"url": env.server.url, "room": ROOM, "issuer": env.issuer, "connector": "oidc", "client_id": CLIENT_ID,
            "redirect_uri": APP_REDIRECT, "flow_driver_dir": FLOW_DRIVER_DIR, **extra}


@pytest.fixture(scope="module")
def seen(oauth_env: OAuthEnv) -> dict[str, Any]:  # noqa: F811
    """What drivers/oauth_scenario.py saw (one run, ~12 s: two waits for expiry)."""
    need_sdk()
    agent, mona, outsider, denied, agent2 = oauth_env.ids("agent", "mona", "outsider", "denied", "agent2")
    issuer = oauth_env.issuer
    return run_driver("oauth_scenario.py", scenario_config(
        oauth_env, client_secret=CLIENT_SECRET, expire=EXPIRE, mona_identity=mona, tokens={
            "agent": token(oauth_env, agent, role="agent", api=allow(issuer, CLIENT_ID)),
            "mona": token(oauth_env, mona),
            "outsider": token(oauth_env, outsider),
            "denied": token(oauth_env, denied, role="agent", api=allow(issuer, "someone-else")),
            "agent2": token(oauth_env, agent2, role="agent"),
        },
    ), timeout=90)


def test_the_consenting_app_gets_the_resolved_request_and_a_pkce_challenge(seen: dict[str, Any], oauth_env: OAuthEnv) -> None:  # noqa: F811
    assert "handler_errors" not in seen, seen.get("handler_errors")
    first = seen["prompts"][0]
    assert first == {"authorization_endpoint": f"{oauth_env.issuer}/auth", "token_endpoint": f"{oauth_env.issuer}/token",
                     "scopes": ["openid"], "challenge_length": 43}


def test_the_first_request_is_consented_and_its_token_works(seen: dict[str, Any]) -> None:
    first = seen["first"]
    assert (first["prompts"], first["codes"], first["userinfo"]) == (1, 1, 200)


def test_the_second_request_gets_the_stored_token_without_asking(seen: dict[str, Any]) -> None:
    second = seen["second"]
    assert second["token"] == seen["first"]["token"]
    assert (second["prompts"], second["codes"], second["refreshes"]) == (1, 0, 0)


def test_after_expiry_the_token_is_refreshed_without_asking(seen: dict[str, Any]) -> None:
    later = seen["after_expiry"]
    assert later["token"] != seen["first"]["token"]
    assert (later["prompts"], later["codes"], later["refreshes"], later["userinfo"]) == (1, 0, 1, 200)


def test_twenty_concurrent_requests_after_expiry_refresh_once_and_the_grant_lives(seen: dict[str, Any]) -> None:
    burst = seen["concurrent"]
    assert seen["concurrent_distinct"] == 1 and burst["token"] != seen["after_expiry"]["token"]
    assert (burst["refreshes"], burst["revoked"], burst["codes"], burst["prompts"], burst["userinfo"]) == (1, 0, 0, 1, 200)


def test_offline_tokens_go_only_to_identities_the_consent_covers(seen: dict[str, Any]) -> None:
    assert seen["offline_covered"] == {"ok": True, "value": seen["concurrent"]["token"]}
    assert seen["offline_outsider"] == {"ok": True, "value": None}
    assert seen["offline_own"] == {"ok": True, "value": None}  # nothing stored for the agent itself


def test_the_grant_allow_list_is_enforced(seen: dict[str, Any]) -> None:
    for name in ("denied_request", "denied_offline"):
        assert (seen[name]["ok"], seen[name]["code"]) == (False, 1001), seen[name]


def test_only_the_participant_asked_may_answer(seen: dict[str, Any]) -> None:
    assert (seen["outsider_provides"]["ok"], seen["outsider_provides"]["code"]) == (False, 1001)


def test_a_reject_reaches_the_requester(seen: dict[str, Any]) -> None:
    """agent2 is not covered by mona's consent, so she is asked (inline client config) and declines."""
    rejected = seen["rejected"]
    assert (rejected["ok"], rejected["code"]) == (False, 1011) and "cancelled" in rejected["text"]
    assert len(seen["prompts"]) == 2


def test_no_token_reaches_the_server_log(seen: dict[str, Any], oauth_env: OAuthEnv) -> None:  # noqa: F811
    log = oauth_env.server.stderr()
    for name in ("first", "after_expiry", "concurrent"):
        assert seen[name]["token"] not in log
    assert CLIENT_SECRET not in log


async def test_native_and_sdk_participants_ask_each_other(oauth_env: OAuthEnv, browser: aiohttp.ClientSession) -> None:  # noqa: F811
    """A native agent asks an SDK person (the MeshAgent way); an SDK agent asks a native
    person (roomsvc's start link, consented in the browser driven here)."""
    need_sdk()
    native_agent_id, native_person_id, sdk_person, sdk_agent = oauth_env.ids("nagent", "nperson", "sperson", "sagent")
    native_agent = await oauth_env.connect(native_agent_id, room=ROOM, role="agent")
    native_person = await oauth_env.connect(native_person_id, room=ROOM)
    driver = await Driver.start("oauth_mixed_scenario.py", scenario_config(
        oauth_env, person_identity=sdk_person, native_person_id=native_person.participant_id,
        tokens={"person": token(oauth_env, sdk_person), "agent": token(oauth_env, sdk_agent, role="agent")},
    ))
    try:
        ready = await driver.step("ready")
        asked = asyncio.get_running_loop().create_task(native_agent.request("secrets.request_oauth_token", {
            "connector": "oidc", "from_participant_id": ready["person_id"], "redirect_uri": APP_REDIRECT, "timeout": 30,
        }, timeout=40))
        push = (await native_person.next_event("secrets.request_oauth_token", timeout=20))["data"]
        assert push["from"]["id"] == ready["agent_id"] and "challenge" not in push
        status, page = await finish(browser, await consent(browser, await open_link(browser, push["start_url"]), native_person_id))
        assert status == 200, page
        grant = await asked
        assert (await oauth_env.userinfo(grant["access_token"]))[0] == 200
        result = (await driver.line(timeout=40))["result"]
    finally:
        await native_agent.close()
        await native_person.close()
        await driver.stop()
    assert grant["credential"]["owner"] == sdk_person and grant["credential"]["subject"] == sdk_person
    assert "handler_errors" not in result, result.get("handler_errors")
    assert result["sdk_asks_native"]["ok"] is True and result["userinfo"] == 200
    assert len(result["prompts"]) == 1


async def test_the_raw_push_has_no_client_secret_and_answers_to_it_are_ignored(oauth_env: OAuthEnv) -> None:  # noqa: F811
    """At the wire level, with an inline client config that carries a client secret."""
    agent_id, person_id = oauth_env.ids("ragent", "rperson")
    agent = await oauth_env.connect(agent_id, room=ROOM, role="agent")
    person = await RawClient.connect(oauth_env.server.url, ROOM, token(oauth_env, person_id))
    try:
        oauth = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": ["openid"],
                 "authorization_endpoint": f"{oauth_env.issuer}/auth", "token_endpoint": f"{oauth_env.issuer}/token"}
        asked = asyncio.get_running_loop().create_task(agent.request("secrets.request_oauth_token", {
            "oauth": oauth, "from_participant_id": person.participant_id, "redirect_uri": APP_REDIRECT, "timeout": 30,
        }, timeout=40))
        message = await person.push("secrets.request_oauth_token", timeout=10)
        assert CLIENT_SECRET.encode() not in message.payload
        header, trailer = unpack(message.payload)
        assert set(header) == {"request_id", "request", "challenge", "owner", "usable_by"} and trailer == b""
        # the person sees whose credential it will be and who may use it
        assert (header["owner"], header["usable_by"]) == (person_id, sorted([agent_id, person_id]))
        assert header["request"] == {
            "connector": None,
            "oauth": {"client_id": CLIENT_ID, "authorization_endpoint": oauth["authorization_endpoint"],
                      "token_endpoint": oauth["token_endpoint"], "no_pkce": False, "scopes": ["openid"]},
            "redirect_uri": APP_REDIRECT, "participant_id": person.participant_id, "timeout": 30, "delegate_to": None,
        }
        assert len(header["challenge"]) == 43
        for packet in encode_packets(message.id, "__response__", pack({"type": "empty"})):
            await person.ws.send_bytes(packet)
        answer = JsonContent({"request_id": header["request_id"], "code": None, "error": "cancelled"})
        assert await person.invoke("secrets", "provide_oauth_authorization", answer) == EmptyContent()
        with pytest.raises(ResponseError) as caught:
            await asked
        assert caught.value.name == "rejected"
        ended = unpack((await person.push("messaging.send")).payload)[0]
        assert ended == {"from_participant_id": person.participant_id, "type": "secrets.request_ended",
                         "message": {"request_id": header["request_id"], "outcome": "rejected"}}
    finally:
        await agent.close()
        await person.close()
