"""Moving a vault from SQLite to PostgreSQL: `roomsvc export` from a stopped SQLite
server, `roomsvc import` into an empty PostgreSQL database, then a PostgreSQL server with
the same master key decrypts every secret (with its kept versions), project secrets resolve,
the audit log and token revocations came along, and the file never held a value."""

from __future__ import annotations

from pathlib import Path

from tests.support import postgres
from tests.support.peers import need
from tests.support.server import Server
from tests.vault.conftest import Http

CANARY = "Canary-Export-Value-5150"


async def test_every_secret_decrypts_after_moving_from_sqlite_to_postgres(tmp_path: Path) -> None:
    need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN} (set ROOMSVC_TEST_POSTGRES)")
    data = tmp_path / "data"
    sqlite_node = Server(data).start()
    values: dict[tuple[str, str, str], str] = {}
    try:
        async with Http(sqlite_node, sqlite_node.operator_token()) as op:
            assert (await op.call("PUT", "/v1/admin/secrets/keys/bag", json={"data": {"TOKEN": CANARY}})).status == 200
            # a key rotation: values stay readable under the new key, and the old key is kept
            assert (await op.call("POST", "/v1/admin/keys/rotate")).status == 200
        for who in ("alice", "bob"):
            for room in ("room1", "room2"):
                async with Http(sqlite_node, sqlite_node.token(who, room, api=("secrets",))) as http:
                    for i in range(3):
                        for version in range(2):  # two versions of each
                            value = f"{CANARY}-{who}-{room}-{i}-v{version}"
                            assert (await http.set(room, f"s{i}", value)).status == 200
                        values[(who, room, f"s{i}")] = value
        revoked = sqlite_node.token("mallory", api=("secrets",))
        done = sqlite_node.cli("token", "revoke", "--identity", "mallory", token=sqlite_node.operator_token())
        assert done.returncode == 0, done.stderr
        async with Http(sqlite_node, sqlite_node.operator_token()) as op:
            audit_before = (await op.call("GET", "/v1/admin/audit", params={"limit": 100000})).body
    finally:
        sqlite_node.stop()

    export = tmp_path / "vault.jsonl"
    done = sqlite_node.cli("export", str(export), "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert b"exporting [" in done.stderr and b"100%" in done.stderr  # progress shown
    assert export.stat().st_mode & 0o777 == 0o600
    text = export.read_text()
    assert CANARY not in text  # values travel encrypted, never in clear
    again = sqlite_node.cli("export", str(export), "--data-dir", str(data))
    assert again.returncode == 1 and b"exists" in again.stderr  # never overwritten

    with postgres.database("roomsvc_test_import") as dsn:
        env = postgres.postgres_env(dsn)
        done = sqlite_node.cli("import", str(export), "--data-dir", str(data), env=env)
        assert done.returncode == 0, done.stderr
        assert b"importing [" in done.stderr and b"100%" in done.stderr
        twice = sqlite_node.cli("import", str(export), "--data-dir", str(data), env=env)
        assert twice.returncode == 1 and b"already holds a vault" in twice.stderr

        pg_node = Server(data, env=env).start()
        try:
            for (who, room, secret_id), value in values.items():
                async with Http(pg_node, pg_node.token(who, room, api=("secrets",))) as http:
                    assert await http.value(room, secret_id) == value.encode()
                    assert [v["version"] for v in (await http.versions(room, secret_id)).body["versions"]] == [1, 2]
                    # ids continue after the imported ones: new writes work
                    assert (await http.set(room, secret_id, "after the move", expected_version=2)).status == 200
            async with Http(pg_node, pg_node.operator_token()) as op:
                audit_after = (await op.call("GET", "/v1/admin/audit", params={"limit": 100000})).body["audit"]
                keys = (await op.call("GET", "/v1/admin/keys")).body["keys"]
                bags = (await op.call("GET", "/v1/admin/secrets")).body["secrets"]
            old_lines = audit_before["audit"]
            assert len(old_lines) > 20 and audit_after[: len(old_lines)] == old_lines  # the audit log came along, in order
            assert len(keys) == 2  # the rotated-from key came along with the active one
            assert [(b["id"], b["version"]) for b in bags] == [("bag", 1)]
            async with Http(pg_node, revoked) as mallory:  # the revocation still holds
                assert (await mallory.list("room1")).error == "unauthenticated"
        finally:
            pg_node.stop()
