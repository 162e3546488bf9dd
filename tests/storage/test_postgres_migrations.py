"""PostgreSQL migrations: twins of SQLite's, applied once even by nodes starting
together, and a database newer than this roomsvc is refused."""

from __future__ import annotations

import asyncio

import pytest

from roomsvc.errors import StorageError
from roomsvc.storage.migrate import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, migrations
from roomsvc.storage.postgres.locks import lock_id
from roomsvc.storage.postgres.store import Connector, PostgresStore, migrate, sql
from tests.support import postgres
from tests.support.peers import need


def test_every_sqlite_migration_has_a_postgres_twin_of_the_same_name() -> None:
    """A migration added for one engine only would leave the other behind: each number
    exists for both, with the same file name."""
    assert [name for _, name, _ in migrations(SQLITE_MIGRATIONS)] == [name for _, name, _ in migrations(POSTGRES_MIGRATIONS)]


def test_placeholders_and_lock_ids() -> None:
    assert sql("UPDATE t SET a = ? WHERE b = ? AND c IN (?, ?)") == "UPDATE t SET a = $1 WHERE b = $2 AND c IN ($3, $4)"
    assert lock_id("room1/alice/oidc") == lock_id("room1/alice/oidc") != lock_id("room1/alice/oidc2")
    assert -(2**63) <= lock_id("x") < 2**63


async def test_nodes_starting_together_apply_each_migration_once_and_newer_is_refused() -> None:
    need(postgres.available(), "PostgreSQL is not reachable")
    with postgres.database("roomsvc_test_migrations") as dsn:
        connector = Connector(dsn, password=None, connect_timeout=5, command_timeout=30)
        told: list[str] = []
        results = await asyncio.gather(*[migrate(connector, lambda n, name, latest: told.append(name)) for _ in range(3)])
        latest = len(migrations(POSTGRES_MIGRATIONS))
        assert sorted(results) == [(0, latest), (latest, latest), (latest, latest)]
        assert sorted(told) == sorted(name for _, name, _ in migrations(POSTGRES_MIGRATIONS))
        rows = await postgres.sql(dsn, "SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, latest + 1))

        await postgres.sql(dsn, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 0)")
        with pytest.raises(StorageError, match="newer than this roomsvc"):
            await PostgresStore.open(connector)


async def test_an_unreachable_database_is_a_storage_error_naming_no_password() -> None:
    canary = "Canary-Unreachable-Pass-12"
    connector = Connector("postgresql://roomsvc@127.0.0.1:1/none", password=canary, connect_timeout=2, command_timeout=2)
    with pytest.raises(StorageError, match="cannot reach PostgreSQL") as caught:
        await PostgresStore.open(connector)
    assert canary not in str(caught.value) and canary not in repr(connector)
