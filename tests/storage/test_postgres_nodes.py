"""roomsvc on PostgreSQL end to end: real server subprocesses with storage.engine =
postgres serving secrets over HTTP and a websocket room; a second node on the same
database reads what the first wrote at once; a node without the vault's master key
refuses to start rather than mint a new key; /readyz follows the database; `roomsvc
migrate` shows its progress; a DSN holding a password is refused without printing it."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest

from roomsvc.crypto.envelope import new_key
from roomsvc.crypto.keys import new_signing_keyring, write_signing_keyring
from roomsvc.storage.migrate import POSTGRES_MIGRATIONS, migrations
from tests.support import postgres
from tests.support.native_client import NativeClient
from tests.support.peers import need
from tests.support.server import Server
from tests.support.waiting import until
from tests.vault.conftest import Http, audit_lines


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN} (set ROOMSVC_TEST_POSTGRES)")
    with postgres.database("roomsvc_test_nodes") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def node_a(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("node-a") / "data", env=postgres.postgres_env(pg_dsn)).start()
    yield srv
    srv.stop()


def copy_keys(source: Path, target: Path) -> Path:
    """A second node's data directory: the same master and signing keys, no database."""
    target.mkdir(parents=True)
    for name in ("master.key", "signing.key"):
        shutil.copy2(source / name, target / name)
    return target


def ready(server: Server) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.url + "/readyz", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_secrets_over_http_and_a_websocket_room_on_postgres(node_a: Server, pg_dsn: str) -> None:
    assert not (node_a.data_dir / "roomsvc.db").exists()  # nothing went to SQLite
    assert ready(node_a)[0] == 200
    async with Http(node_a, node_a.token("alice", api=("secrets",))) as http:
        assert (await http.set("room1", "api-key", b"value on postgres")).status == 200
        assert await http.value("room1", "api-key") == b"value on postgres"
        assert (await http.set("room1", "api-key", b"v2", expected_version=1)).status == 200
        assert (await http.set("room1", "api-key", b"v3", expected_version=1)).error == "conflict"
    alice = await NativeClient.connect(node_a.ws_url("room1"), node_a.token("alice", api=("secrets",)))
    bob = await NativeClient.connect(node_a.ws_url("room1"), node_a.token("bob"))
    try:
        await alice.request("message.send", {"to": bob.participant_id, "message_type": "hi", "body": {"n": 1}})
        assert (await bob.next_event("message"))["data"]["body"] == {"n": 1}
        got = await alice.request("secrets.get", {"id": "api-key"})
        assert base64.b64decode(got["value"]) == b"v2"
    finally:
        await alice.close()
        await bob.close()
    # the rows are in PostgreSQL, encrypted: the value is nowhere in the database
    rows = await postgres.sql(pg_dsn, "SELECT ciphertext FROM room_secret_versions")
    assert rows and all(b"value on postgres" not in bytes(r[0]) and b"v2" != bytes(r[0]) for r in rows)
    actions = [line["action"] for line in await audit_lines(node_a, room="room1")]
    assert "create" in actions and "update" in actions


async def test_a_second_node_reads_at_once_and_one_without_the_master_key_refuses(
    node_a: Server, pg_dsn: str, tmp_path: Path
) -> None:
    node_b = Server(copy_keys(node_a.data_dir, tmp_path / "node-b"), env=postgres.postgres_env(pg_dsn)).start()
    try:
        async with Http(node_a, node_a.token("carol", api=("secrets",))) as on_a, \
                Http(node_b, node_b.token("carol", api=("secrets",))) as on_b:
            for i in range(5):
                assert (await on_a.set("room1", f"s{i}", f"written on a {i}")).status == 200
                assert await on_b.value("room1", f"s{i}") == f"written on a {i}".encode()
                assert (await on_b.set("room1", f"s{i}", "b wins", expected_version=1)).status == 200
                assert (await on_a.set("room1", f"s{i}", "a lost", expected_version=1)).error == "conflict"
    finally:
        node_b.stop()
    # an empty data directory on a database that holds a vault: sealed, no new key made
    lost = Server(tmp_path / "node-c", env=postgres.postgres_env(pg_dsn))
    with pytest.raises(RuntimeError, match="exited with 3"):
        lost.start(timeout=15)
    lost.stop()
    assert "sealed" in lost.stderr() and not (tmp_path / "node-c" / "master.key").exists()


async def test_readyz_reports_the_database_going_away(tmp_path: Path) -> None:
    need(postgres.available(), "PostgreSQL is not reachable")
    name = postgres.create_database("roomsvc_test_ready")
    try:
        srv = Server(tmp_path / "data", env={
            **postgres.postgres_env(postgres.dsn_of(name)), "ROOMSVC_STORAGE_POSTGRES_CONNECT_TIMEOUT": "2",
        }).start()
        try:
            assert ready(srv) == (200, '{"status": "ready"}')
            postgres.drop_database(name)  # WITH (FORCE): every connection of the node is cut
            await until(lambda: ready(srv)[0] == 503, "readyz to answer 503", within=20)
            assert "storage unavailable" in ready(srv)[1]
        finally:
            srv.stop()
    finally:
        postgres.drop_database(name)


def test_migrate_shows_progress_and_is_idempotent(tmp_path: Path) -> None:
    need(postgres.available(), "PostgreSQL is not reachable")
    with postgres.database("roomsvc_test_migrate") as dsn:
        cli = Server(tmp_path / "data").cli
        env = postgres.postgres_env(dsn)
        first = cli("migrate", "--data-dir", str(tmp_path / "data"), env=env)
        assert first.returncode == 0, first.stderr
        latest = len(migrations(POSTGRES_MIGRATIONS))
        assert f"[1/{latest}] applying 0001_init.sql".encode() in first.stderr
        assert f"[{latest}/{latest}]".encode() in first.stderr
        assert f"migrated to schema version {latest}".encode() in first.stdout
        again = cli("migrate", "--data-dir", str(tmp_path / "data"), env=env)
        assert again.returncode == 0 and b"nothing to do" in again.stdout and b"applying" not in again.stderr


def test_a_dsn_with_a_password_is_refused_without_printing_it(tmp_path: Path) -> None:
    canary = "Canary-PG-Pass-7731"
    cli = Server(tmp_path / "data").cli
    for dsn in (f"postgresql://roomsvc:{canary}@127.0.0.1:5432/db", f"host=127.0.0.1 user=roomsvc password={canary}",
                f"postgresql://roomsvc@127.0.0.1/db?password={canary}"):
        done = cli("migrate", "--data-dir", str(tmp_path / "data"),
                   env={"ROOMSVC_STORAGE_ENGINE": "postgres", "ROOMSVC_STORAGE_POSTGRES_DSN": dsn})
        assert done.returncode == 2
        assert b"ROOMSVC_STORAGE_POSTGRES_PASSWORD" in done.stderr
        assert canary.encode() not in done.stdout + done.stderr


async def test_sigkill_during_writes_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """Crash safety on PostgreSQL: a node killed mid-stream of group-committed writes;
    after a restart every write it acknowledged is there and decrypts."""
    need(postgres.available(), "PostgreSQL is not reachable")
    with postgres.database("roomsvc_test_crash") as dsn:
        env = postgres.postgres_env(dsn)
        srv = Server(tmp_path / "data", env=env).start()
        acked: dict[str, bytes] = {}
        stop = asyncio.Event()

        async def writer(k: int) -> None:
            async with Http(srv, srv.token("alice", api=("secrets",))) as http:
                n = 0
                while not stop.is_set():
                    secret_id, value = f"w{k}-{n}", os.urandom(16) + f"/{k}/{n}".encode()
                    try:
                        reply = await http.set("room1", secret_id, value)
                    except (aiohttp.ClientError, ConnectionError):
                        return
                    if reply.status == 200:
                        acked[secret_id] = value
                    n += 1

        tasks = [asyncio.create_task(writer(k)) for k in range(4)]
        try:
            await until(lambda: len(acked) >= 80, "80 acknowledged writes", within=60)
            srv.kill()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            srv.stop()
        again = Server(tmp_path / "data", env=env).start()
        try:
            async with Http(again, again.token("alice", api=("secrets",))) as http:
                for secret_id, value in acked.items():
                    assert await http.value("room1", secret_id) == value, secret_id
        finally:
            again.stop()


async def test_nodes_starting_together_on_an_empty_database_share_one_first_key(tmp_path: Path) -> None:
    """Each node creates the vault's first key when it finds none: starting together,
    they take turns (an advisory lock), so there is one key and each node reads the other's writes."""
    need(postgres.available(), "PostgreSQL is not reachable")
    first = tmp_path / "keys"
    first.mkdir()
    (first / "master.key").write_text(base64.b64encode(new_key()).decode() + "\n")
    (first / "master.key").chmod(0o600)
    write_signing_keyring(first / "signing.key", new_signing_keyring())
    with postgres.database("roomsvc_test_first_key") as dsn:
        env = postgres.postgres_env(dsn)
        nodes = [Server(copy_keys(first, tmp_path / f"n{i}"), env=env) for i in range(3)]
        try:
            await asyncio.gather(*(asyncio.to_thread(node.start) for node in nodes))
            assert len(await postgres.sql(dsn, "SELECT id FROM keys")) == 1
            for i, node in enumerate(nodes):
                async with Http(node, node.token("dora", api=("secrets",))) as http:
                    assert (await http.set("room1", f"k{i}", f"from node {i}")).status == 200
            for node in nodes:
                async with Http(node, node.token("dora", api=("secrets",))) as http:
                    for i in range(len(nodes)):
                        assert await http.value("room1", f"k{i}") == f"from node {i}".encode()
        finally:
            for node in nodes:
                node.stop()


async def test_a_key_rotation_on_one_node_is_followed_by_the_others(tmp_path: Path) -> None:
    """Node A rotates (new active key, every value re-wrapped under it): node B loads the
    new key within storage.postgres_key_reload_interval, reads the re-wrapped values,
    writes under the new key, and A can then retire the old one."""
    need(postgres.available(), "PostgreSQL is not reachable")
    with postgres.database("roomsvc_test_rotation") as dsn:
        env = {**postgres.postgres_env(dsn), "ROOMSVC_STORAGE_POSTGRES_KEY_RELOAD_INTERVAL": "0.2"}
        (tmp_path / "a").mkdir()
        a = Server(tmp_path / "a" / "data", env=env).start()
        b = Server(copy_keys(a.data_dir, tmp_path / "b"), env=env).start()
        try:
            async with Http(a, a.token("erin", api=("secrets",))) as on_a, \
                    Http(b, b.token("erin", api=("secrets",))) as on_b, Http(a, a.operator_token()) as op:
                for i in range(5):
                    assert (await on_a.set("room1", f"r{i}", f"before rotation {i}")).status == 200
                (old,) = [k["id"] for k in (await op.call("GET", "/v1/admin/keys")).body["keys"]]
                rotated = await op.call("POST", "/v1/admin/keys/rotate")
                assert rotated.status == 200, rotated.text
                new = [k["id"] for k in (await op.call("GET", "/v1/admin/keys")).body["keys"] if k["active"]][0]
                assert new != old

                async def b_reads_everything() -> bool:
                    # decryption_failed until B has loaded the new key
                    replies = [await on_b.get("room1", f"r{i}") for i in range(5)]
                    return all(r.status == 200 for r in replies)

                await until(b_reads_everything, "node B to read values re-wrapped under the new key", within=20)
                for i in range(5):
                    assert await on_b.value("room1", f"r{i}") == f"before rotation {i}".encode()
                assert (await on_b.set("room1", "after", "written on b")).status == 200
                (row,) = await postgres.sql(
                    dsn, "SELECT v.kek_id FROM room_secret_versions v JOIN room_secrets s ON s.pk = v.secret_pk "
                    "WHERE s.secret_id = 'after'")
                assert row[0] == new  # B encrypts under the key A made active
                assert (await op.call("DELETE", f"/v1/admin/keys/{old}")).status == 200
                assert await on_b.value("room1", "after") == b"written on b"
        finally:
            b.stop()
            a.stop()
