"""The storage conformance fixtures: every test taking ``backend`` runs once per engine,
unchanged. SQLite gets a file in the test's temp dir; PostgreSQL a database created for
this test run (dropped at its end), emptied before each test. Without a PostgreSQL
server the postgres half is ``need()``-skipped (a failure under CI)."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from roomsvc.crypto.envelope import MasterKey
from roomsvc.storage.postgres.store import Connector, PostgresStore
from roomsvc.storage.sqlite.store import SqliteStore
from tests.support import postgres
from tests.support.peers import need
from tests.vault.conftest import Vault, vault_on

ENGINES = ("sqlite", "postgres")


@dataclass
class Backend:
    """One engine under test: open its store, and reach its tables from a second client."""

    engine: str
    path: Path
    dsn: str = ""

    async def open(self) -> Any:
        if self.engine == "postgres":
            return await PostgresStore.open(Connector(self.dsn, password=None, connect_timeout=5, command_timeout=30))
        return await SqliteStore.open(self.path)

    async def vault(self, *, master: MasterKey | None = None, max_versions: int = 10) -> Vault:
        return await vault_on(await self.open(), self.path, master=master, max_versions=max_versions)

    async def query(self, text: str) -> list[tuple[Any, ...]]:
        if self.engine == "postgres":
            return [tuple(r) for r in await postgres.sql(self.dsn, text)]
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db:
            return [tuple(r) for r in db.execute(text).fetchall()]

    async def execute(self, text: str) -> None:
        if self.engine == "postgres":
            await postgres.sql(self.dsn, text)
            return
        with contextlib.closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
            db.execute(text)

    async def break_audit(self) -> None:
        """From now on every audit insert fails (the audit log is down)."""
        if self.engine == "postgres":
            await self.execute(
                "CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit is down'; END $$"
            )
            await self.execute("CREATE TRIGGER no_audit BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION no_audit()")
        else:
            await self.execute(
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit is down'); END"
            )

    async def heal_audit(self) -> None:
        if self.engine == "postgres":
            await self.execute("DROP TRIGGER no_audit ON audit")
            await self.execute("DROP FUNCTION no_audit()")
        else:
            await self.execute("DROP TRIGGER no_audit")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """This test run's database (created on first use, dropped at the end of the run)."""
    need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN} (set ROOMSVC_TEST_POSTGRES)")
    with postgres.database() as dsn:
        yield dsn


async def _empty(dsn: str) -> None:
    tables = [r[0] for r in await postgres.sql(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"
    )]
    if tables:
        await postgres.sql(dsn, f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    await postgres.sql(dsn, "DROP FUNCTION IF EXISTS no_audit() CASCADE")


@pytest.fixture(params=ENGINES)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_database")
        await _empty(dsn)
        yield Backend("postgres", tmp_path / "vault.db", dsn)
    else:
        yield Backend("sqlite", tmp_path / "vault.db")


@pytest.fixture
async def vault(backend: Backend) -> AsyncIterator[Vault]:
    v = await backend.vault()
    yield v
    await v.close()
