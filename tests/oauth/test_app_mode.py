"""The MeshAgent way, in process: the consenting participant's app gets the request and
the PKCE challenge, runs the redirect itself (its own redirect_uri), and answers with
provide_oauth_authorization(request_id, code). This is the domain API the MeshAgent
adapter calls; here a participant that declared ``runs_own_redirect`` at join (as the
MeshAgent transport does) stands in for it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType
from typing import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest

from roomsvc.app import Runtime, open_runtime
from roomsvc.config import load_settings
from roomsvc.domain.events import OAuthConsentRequested, RequestEnded
from roomsvc.domain.principal import Principal
from roomsvc.domain.rooms import Capabilities
from roomsvc.errors import InvalidState, PermissionDenied, Rejected
from roomsvc.ids import Identity, RoomName
from tests.oauth.conftest import APP_REDIRECT, CLIENT_SECRET, OAuthEnv
from tests.oauth.flows import query
from tests.peers.oidc.flow_driver import drive_consent
from tests.support.fakes import Sink
from tests.support.waiting import until

APP = Capabilities(runs_own_redirect=True)


def principal(identity: str) -> Principal:
    return Principal(identity=Identity(identity), room=RoomName("room1"), api=MappingProxyType({"secrets": {}}))


@pytest.fixture
async def runtime(oauth_env: OAuthEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("OIDC_TEST_CLIENT_SECRET", CLIENT_SECRET)
    settings = load_settings(environ={
        "ROOMSVC_SERVER_DATA_DIR": str(tmp_path / "data"),
        "ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "1",
        "ROOMSVC_OAUTH_CONNECTORS_DIR": str(oauth_env.connectors),
    })
    rt = await open_runtime(settings)
    yield rt
    await rt.store.close()
    for close in rt.closers:
        await close()


def app_authorize_url(notice: OAuthConsentRequested, state: str) -> str:
    """What the consenting app builds from the push (as MeshAgent's Powerboards does)."""
    oauth = notice.oauth
    return oauth["authorization_endpoint"] + "?" + urlencode({
        "response_type": "code", "client_id": oauth["client_id"], "redirect_uri": notice.redirect_uri,
        "scope": " ".join(oauth["scopes"]), "state": state,
        "code_challenge": notice.challenge, "code_challenge_method": "S256",
    })


async def test_the_consenting_app_answers_with_the_code(oauth_env: OAuthEnv, runtime: Runtime) -> None:
    rooms, oauth = runtime.services.rooms, runtime.services.oauth
    assert oauth is not None
    agent = await rooms.join(principal("agent"), Sink())
    app = Sink()
    person = await rooms.join(principal("mona"), app, protocol="meshagent", capabilities=APP)
    intruder = await rooms.join(principal("intruder"), Sink())
    task = asyncio.create_task(oauth.request_token(
        agent, from_participant_id=person.id, connector="oidc", redirect_uri=APP_REDIRECT, timeout=20,
    ))
    data = await app.notice(OAuthConsentRequested)
    assert data.start_url is None and data.challenge is not None and len(data.challenge) == 43
    assert data.redirect_uri == APP_REDIRECT
    assert "client_secret" not in data.oauth
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        callback = await drive_consent(browser, app_authorize_url(data, "app-state"), login="mona")
    code = query(callback)["code"]
    with pytest.raises(PermissionDenied):
        await oauth.provide_authorization(intruder, data.request_id, code)
    await oauth.provide_authorization(person, data.request_id, code)
    grant = await task
    assert grant.credential["owner"] == "mona" and grant.credential["subject"] == "mona"
    assert (await oauth_env.userinfo(grant.access_token))[0] == 200
    with pytest.raises(InvalidState):
        await oauth.provide_authorization(person, data.request_id, code)
    assert "refresh_token" not in repr(grant) and grant.access_token not in repr(grant)


async def test_the_consenting_app_can_reject(runtime: Runtime) -> None:
    rooms, oauth = runtime.services.rooms, runtime.services.oauth
    assert oauth is not None
    agent = await rooms.join(principal("agent"), Sink())
    app = Sink()
    person = await rooms.join(principal("nina"), app, protocol="meshagent", capabilities=APP)
    task = asyncio.create_task(oauth.request_token(
        agent, from_participant_id=person.id, connector="oidc", redirect_uri=APP_REDIRECT, timeout=20,
    ))
    data = await app.notice(OAuthConsentRequested)
    await oauth.reject_authorization(person, data.request_id, "cancelled")
    with pytest.raises(Rejected, match="cancelled"):
        await task
    assert (await app.notice(RequestEnded)).outcome == "rejected"


async def test_an_answer_whose_sender_goes_away_mid_exchange_still_completes_the_flow(
    oauth_env: OAuthEnv, runtime: Runtime
) -> None:
    """The consenting app sends the code and its connection drops (its request task is
    cancelled) while roomsvc exchanges the code: the exchange still finishes, the requester
    gets the token, and no flow is left 'exchanging'."""
    from roomsvc.domain.oauth.flows import FlowStatus
    from roomsvc.storage.sqlite.oauth_store import SqliteFlowStore

    rooms, oauth = runtime.services.rooms, runtime.services.oauth
    assert oauth is not None
    agent = await rooms.join(principal("agent"), Sink())
    app = Sink()
    person = await rooms.join(principal("olga"), app, protocol="meshagent", capabilities=APP)
    task = asyncio.create_task(oauth.request_token(
        agent, from_participant_id=person.id, connector="oidc", redirect_uri=APP_REDIRECT, timeout=20,
    ))
    data = await app.notice(OAuthConsentRequested)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        callback = await drive_consent(browser, app_authorize_url(data, "app-state"), login="olga")
    flows = SqliteFlowStore(runtime.store)
    answer = asyncio.create_task(oauth.provide_authorization(person, data.request_id, query(callback)["code"]))
    # the provider answers the token request after a delay (50 ms): cancel while the flow is exchanging
    async def exchanging() -> bool:
        flow = await flows.get_flow(id=data.request_id)
        return flow is not None and flow.status is FlowStatus.EXCHANGING

    await until(exchanging, "the flow is exchanging the code", within=10, poll=0.002)
    answer.cancel()
    grant = await asyncio.wait_for(task, 10)
    assert grant.credential["owner"] == "olga" and (await oauth_env.userinfo(grant.access_token))[0] == 200
    ended = await flows.get_flow(id=data.request_id)
    assert ended is not None and ended.status is FlowStatus.COMPLETED
