"""Two roomsvc processes on one PostgreSQL database, against the real provider: a refresh
and a code exchange each happen once across nodes.

Single-flight refresh across nodes: two roomsvc processes on one PostgreSQL database,
against the real provider, which rotates refresh tokens and revokes the whole grant when
a rotated one is reused. 25 concurrent uses on each node of one expired credential must
cause exactly one refresh at the provider: the nodes share a PostgreSQL advisory lock
(roomsvc/storage/postgres/locks.py) around re-read, refresh and compare-and-swap write.
With only an in-process lock each node would refresh once, the second with a refresh
token the first had rotated, and the provider would revoke the grant.

The credential is made expired by rewriting its stored expiry (white box, with node A's
master key), so the test does not wait for the provider's token lifetime."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, Iterator

import aiohttp
import pytest

from roomsvc.crypto.envelope import EnvelopeCipher, MasterKey
from roomsvc.domain.ports import EncryptedBlob
from roomsvc.domain.secrets import secret_aad
from roomsvc.storage.sqlite.store import _secret_record
from tests.oauth.conftest import OAuthEnv
from tests.oauth.flows import ask, consent, finish, open_link, run_flow
from tests.storage.test_postgres_nodes import copy_keys
from tests.support import postgres
from tests.support.native_client import NativeClient
from tests.support.peers import need
from tests.support.server import Server

USES_PER_NODE = 25


@pytest.fixture(scope="module")
def nodes(oauth_env: OAuthEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, str]]:
    need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN} (set ROOMSVC_TEST_POSTGRES)")
    base = tmp_path_factory.mktemp("pg-nodes")
    with postgres.database("roomsvc_test_refresh") as dsn:
        env = {**oauth_env.env, **postgres.postgres_env(dsn), "ROOMSVC_OAUTH_REFRESH_MARGIN": "0.5"}
        # node A listens on the port the provider accepts as a redirect (the module's
        # spare one): the consent's callback lands there
        (base / "a").mkdir()
        a = Server(base / "a" / "data", env=env, args=["--port", str(oauth_env.fake_time_port)]).start()
        try:
            b = Server(copy_keys(a.data_dir, base / "b"), env=env).start()
        except BaseException:
            a.stop()
            raise
        try:
            yield a, b, dsn
        finally:
            b.stop()
            a.stop()


async def expire_credential(node: Server, dsn: str, room: str, owner: str, secret_id: str = "oidc") -> None:
    """White box: rewrite the stored credential's expiry to the past (same version), with the node's master key."""
    master = MasterKey(base64.b64decode((node.data_dir / "master.key").read_text().strip()))
    cipher = EnvelopeCipher()
    for kid, wrapped, active in await postgres.sql(dsn, "SELECT id, wrapped, active FROM keys"):
        cipher.add_key(kid, master.unwrap(kid, bytes(wrapped)), active=bool(active))
    (row,) = await postgres.sql(
        dsn,
        "SELECT s.room, s.owner, s.secret_id, s.delegated_to, s.type, s.name, s.kind, s.version, s.created_at, "
        "s.updated_at, v.kek_id, v.wrapped_dek, v.ciphertext, v.pk FROM room_secrets s JOIN room_secret_versions v "
        "ON v.secret_pk = s.pk AND v.version = s.version WHERE s.room = $1 AND s.owner = $2 AND s.secret_id = $3",
        room, owner, secret_id,
    )
    record = _secret_record(tuple(row)[:10])
    value: dict[str, Any] = json.loads(cipher.decrypt(EncryptedBlob(row[10], bytes(row[11]), bytes(row[12])), secret_aad(record)))
    value["expires_at"] = time.time() - 60
    blob = cipher.encrypt(json.dumps(value).encode(), secret_aad(record))
    await postgres.sql(dsn, "UPDATE room_secret_versions SET kek_id = $1, wrapped_dek = $2, ciphertext = $3 WHERE pk = $4",
                       blob.kek_id, blob.wrapped_dek, blob.ciphertext, row[13])


async def _offline(agent: NativeClient, person_id: str) -> dict[str, Any]:
    return await agent.request("secrets.get_offline_oauth_token", {"connector": "oidc", "delegated_by": person_id}, timeout=30)


async def test_fifty_uses_on_two_nodes_of_an_expired_credential_refresh_once(
    oauth_env: OAuthEnv, nodes: tuple[Server, Server, str], browser: aiohttp.ClientSession
) -> None:
    a, b, dsn = nodes
    async with oauth_env.agent_and_person("nora", server=a) as (agent_id, person_id, agent_a, person):
        first, _ = await run_flow(browser, agent_a, person, person_id)
        agent_b = await oauth_env.connect(agent_id, server=b, role="agent")
        try:
            for round_ in range(2):  # twice: the refresh token rotated by the first round must still work
                await expire_credential(a, dsn, "room1", person_id)
                before = await oauth_env.stats()
                answers = await asyncio.gather(*(
                    _offline(agent, person_id) for _ in range(USES_PER_NODE) for agent in (agent_a, agent_b)
                ))
                after = await oauth_env.stats()
                assert after["token"]["refresh_token"] - before["token"]["refresh_token"] == 1, f"round {round_}"
                assert after["grants_revoked"] == before["grants_revoked"]
                tokens = {answer["access_token"] for answer in answers}
                assert len(tokens) == 1 and first["access_token"] not in tokens
                assert (await oauth_env.userinfo(tokens.pop()))[0] == 200
        finally:
            await agent_b.close()


async def test_one_callback_sent_to_both_nodes_at_once_is_exchanged_once(
    oauth_env: OAuthEnv, nodes: tuple[Server, Server, str], browser: aiohttp.ClientSession
) -> None:
    """The flow's move to 'exchanging' is one conditional UPDATE in the shared database:
    whichever node gets there first exchanges the code, the other refuses. (These nodes
    run without the cluster bus, so A's requester is only waited for when A won; with it,
    tests/oauth/test_consent_across_nodes.py shows A's requester answered either way.)"""
    a, b, _ = nodes
    async with oauth_env.agent_and_person("olga", server=a) as (agent_id, person_id, agent, person):
        task, push = await ask(agent, person)
        callback = await consent(browser, await open_link(browser, push["start_url"]), person_id)
        on_b = callback.replace(a.url, b.url, 1)
        assert on_b != callback
        before = await oauth_env.stats()
        answers = await asyncio.gather(finish(browser, callback), finish(browser, on_b))
        after = await oauth_env.stats()
        assert sorted(status == 200 for status, _ in answers) == [False, True], [s for s, _ in answers]
        assert after["token"]["authorization_code"] - before["token"]["authorization_code"] == 1
        if answers[0][0] == 200:
            assert (await oauth_env.userinfo((await task)["access_token"]))[0] == 200
        else:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert (await person.request("secrets.exists", {"id": "oidc"}))["exists"]
