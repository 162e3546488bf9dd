"""An OAuth consent asked on node A whose callback lands on node B (issue 15): B exchanges
the code, and the requester waiting on A gets the token, told over Redis. Two real roomsvc
processes, cluster on, one PostgreSQL database, the real provider; the same callback sent
to both nodes at once is exchanged once, and the requester gets its answer either way."""

from __future__ import annotations

import asyncio
from typing import Iterator

import aiohttp
import pytest
import redis.asyncio

from tests.cluster.nodes import REDIS_URL, cluster_env, drop_keys, new_prefix, redis_available
from tests.oauth.conftest import OAuthEnv
from tests.oauth.flows import ask, consent, finish, open_link
from tests.storage.test_postgres_nodes import copy_keys
from tests.support import postgres
from tests.support.native_client import NativeClient
from tests.support.peers import need
from tests.support.server import Server
from tests.support.waiting import until


@pytest.fixture(scope="module")
def nodes(oauth_env: OAuthEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN} (set ROOMSVC_TEST_POSTGRES)")
    need(redis_available(), "Redis is not reachable (set ROOMSVC_TEST_REDIS)")
    base = tmp_path_factory.mktemp("consent-nodes")
    prefix = new_prefix()
    with postgres.database("roomsvc_test_consent_nodes") as dsn:
        env = {**oauth_env.env, **postgres.postgres_env(dsn)}
        (base / "a").mkdir()
        # node A on the port the provider accepts as a redirect: the provider sends the
        # browser to A, and the test sends that callback to B instead (a load balancer's choice)
        a = Server(base / "a" / "data", env={**env, **cluster_env(prefix, "consent-a")},
                   args=["--port", str(oauth_env.fake_time_port)]).start()
        try:
            b = Server(copy_keys(a.data_dir, base / "b"), env={**env, **cluster_env(prefix, "consent-b")}).start()
        except BaseException:
            a.stop()
            raise
        try:
            yield a, b
        finally:
            b.stop()
            a.stop()
            drop_keys(prefix)


async def test_a_callback_on_b_completes_the_request_waiting_on_a(
    oauth_env: OAuthEnv, nodes: tuple[Server, Server], browser: aiohttp.ClientSession
) -> None:
    a, b = nodes
    async with oauth_env.agent_and_person("pia", server=a) as (_, person_id, agent, person):
        task, push = await ask(agent, person)
        callback = await consent(browser, await open_link(browser, push["start_url"]), person_id)
        on_b = callback.replace(a.url, b.url, 1)
        assert on_b != callback
        before = await oauth_env.stats()
        status, page = await finish(browser, on_b)
        assert status == 200, page
        answer = await asyncio.wait_for(task, 20)
        assert (await oauth_env.userinfo(answer["access_token"]))[0] == 200
        assert (await oauth_env.stats())["token"]["authorization_code"] - before["token"]["authorization_code"] == 1
        # the person on A is told the request ended (RequestEnded crossed back from B)
        ended = await person.next_event("secrets.request_ended", timeout=10)
        assert ended["data"]["outcome"] == "completed"


async def test_one_callback_sent_to_both_nodes_at_once_is_exchanged_once_and_answered(
    oauth_env: OAuthEnv, nodes: tuple[Server, Server], browser: aiohttp.ClientSession
) -> None:
    a, b = nodes
    async with oauth_env.agent_and_person("quinn", server=a) as (_, person_id, agent, person):
        task, push = await ask(agent, person)
        callback = await consent(browser, await open_link(browser, push["start_url"]), person_id)
        before = await oauth_env.stats()
        answers = await asyncio.gather(finish(browser, callback), finish(browser, callback.replace(a.url, b.url, 1)))
        after = await oauth_env.stats()
        assert sorted(status == 200 for status, _ in answers) == [False, True], [s for s, _ in answers]
        assert after["token"]["authorization_code"] - before["token"]["authorization_code"] == 1
        # whichever node won, the requester on A gets the token
        assert (await oauth_env.userinfo((await asyncio.wait_for(task, 20))["access_token"]))[0] == 200


async def test_a_consent_asked_on_a_of_a_person_on_b_completes_and_its_link_crosses_sealed(
    oauth_env: OAuthEnv, nodes: tuple[Server, Server], browser: aiohttp.ClientSession
) -> None:
    a, b = nodes
    agent_id, person_id = oauth_env.ids("agent", "rhea")
    agent = await oauth_env.connect(agent_id, server=a, role="agent")
    person = await oauth_env.connect(person_id, server=b)
    listener = redis.asyncio.Redis.from_url(REDIS_URL)
    bus = listener.pubsub()
    await bus.subscribe(f"{a.env['ROOMSVC_CLUSTER_PREFIX']}:events")
    try:
        await until(lambda: _lists(agent, person.participant_id), "A lists the person on B", within=20)
        task, push = await ask(agent, person)
        assert push["from"]["identity"] == agent_id and push["start_url"]
        callback = await consent(browser, await open_link(browser, push["start_url"]), person_id)
        status, page = await finish(browser, callback.replace(a.url, b.url, 1))
        assert status == 200, page
        answer = await asyncio.wait_for(task, 20)
        assert (await oauth_env.userinfo(answer["access_token"]))[0] == 200
        assert (await person.next_event("secrets.request_ended", timeout=10))["data"]["outcome"] == "completed"
        # the one-time start link crossed the bus sealed, never in the clear
        ticket = push["start_url"].rsplit("=", 1)[-1].encode()
        seen: list[bytes] = []
        quiet = 0
        while quiet < 5:
            message = await bus.get_message(timeout=0.2)
            if message is None:
                quiet += 1
            elif message["type"] == "message":
                quiet = 0
                seen.append(message["data"])
        assert any(b"consent_request" in data for data in seen)
        assert len(ticket) >= 16 and not any(ticket in data for data in seen)
    finally:
        await bus.aclose()
        await listener.aclose()
        await agent.close()
        await person.close()


async def _lists(client: NativeClient, participant_id: str) -> bool:
    reply = await client.request("participants.list")
    return participant_id in {p["id"] for p in reply["participants"]}
