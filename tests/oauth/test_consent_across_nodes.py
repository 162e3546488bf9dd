"""An OAuth consent asked on node A whose callback lands on node B (issue 15): B exchanges
the code, and the requester waiting on A gets the token, told over Redis. Two real roomsvc
processes, cluster on, one PostgreSQL database, the real provider; the same callback sent
to both nodes at once is exchanged once, and the requester gets its answer either way."""

from __future__ import annotations

import asyncio
from typing import Iterator

import aiohttp
import pytest

from tests.cluster.nodes import cluster_env, drop_keys, new_prefix, redis_available
from tests.oauth.conftest import OAuthEnv
from tests.oauth.flows import ask, consent, finish, open_link
from tests.storage.test_postgres_nodes import copy_keys
from tests.support import postgres
from tests.support.peers import need
from tests.support.server import Server


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
