"""Storage commands (issue 15): migrate, export, import; they work on the configured engine.

``roomsvc migrate`` applies the numbered migrations of ``storage.engine`` (the server
also does at start; run it first to migrate while no node serves). ``roomsvc export FILE``
writes the vault as it is stored (encrypted values, wrapped keys, audit) to a new file;
``roomsvc import FILE`` loads such a file into an empty PostgreSQL database in one
transaction. Moving SQLite -> PostgreSQL::

    roomsvc export vault.jsonl                                   # storage.engine = sqlite
    ROOMSVC_STORAGE_ENGINE=postgres roomsvc import vault.jsonl   # same master key afterwards
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from roomsvc.app import open_store
from roomsvc.cli.options import Parents, command, settings_from
from roomsvc.cli.progress import ProgressBar
from roomsvc.config import Settings
from roomsvc.errors import InvalidRequest
from roomsvc.logs import setup_logging
from roomsvc.storage import transfer
from roomsvc.storage.migrate import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, latest_version
from roomsvc.storage.postgres.store import PostgresStore


def register(sub: Any, parents: Parents) -> None:
    command(sub, "migrate", cmd_migrate, parents=[parents.local], help="apply database migrations",
            description="Apply the numbered migrations of the configured storage engine (storage.engine), with progress. "
            "Servers also migrate at start; nodes starting together take turns.")
    p = command(sub, "export", cmd_export, parents=[parents.local], help="write the vault to a file (to move engines)",
                description="Write every stored secret (still encrypted), the wrapped keys, the audit log and the token "
                "revocations to a new file (mode 0600), for `roomsvc import` into PostgreSQL. Stop the server first. "
                "The master key is not in the file: the target needs the same one.")
    p.add_argument("file", type=Path, help="the file to write (must not exist)")
    p = command(sub, "import", cmd_import, parents=[parents.local], help="load an exported vault into PostgreSQL",
                description="Load a `roomsvc export` file into the configured PostgreSQL database (storage.engine = "
                "postgres), which must hold no vault yet; all or nothing, in one transaction. Start the nodes "
                "with the master key of the exported vault.")
    p.add_argument("file", type=Path, help="a file written by `roomsvc export`")


def _settings(args: argparse.Namespace) -> Settings:
    settings = settings_from(args)
    setup_logging(level="warning", json_lines=False)
    return settings


def _where(settings: Settings) -> str:
    return "PostgreSQL" if settings.storage.engine == "postgres" else f"SQLite {settings.sqlite_path}"


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    package = POSTGRES_MIGRATIONS if settings.storage.engine == "postgres" else SQLITE_MIGRATIONS
    applied: list[str] = []

    def told(number: int, name: str, latest: int) -> None:
        applied.append(name)
        print(f"[{number}/{latest}] applying {name}", file=sys.stderr, flush=True)

    async def run() -> None:
        store = await open_store(settings, on_migration=told)
        await store.close()

    asyncio.run(run())
    latest = latest_version(package)
    if applied:
        print(f"{_where(settings)}: migrated to schema version {latest} ({len(applied)} applied)")
    else:
        print(f"{_where(settings)}: already at schema version {latest}; nothing to do")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path: Path = args.file
    if path.exists():
        raise InvalidRequest(f"{str(path)!r} exists; export writes a new file only")
    package = POSTGRES_MIGRATIONS if settings.storage.engine == "postgres" else SQLITE_MIGRATIONS
    bar = ProgressBar("exporting")

    async def run() -> transfer.Summary:
        store = await open_store(settings)
        try:
            return await transfer.export(store, path, schema=latest_version(package), on_rows=bar.update)
        finally:
            await store.close()

    summary = asyncio.run(run())
    bar.update(summary.total, summary.total)
    bar.finish()
    print(f"exported {summary.total} rows from {_where(settings)} to {path}: "
          + ", ".join(f"{t} {n}" for t, n in summary.rows.items()))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.storage.engine != "postgres":
        raise InvalidRequest("import loads into PostgreSQL: set storage.engine = \"postgres\" (ROOMSVC_STORAGE_ENGINE=postgres)")
    path: Path = args.file
    header = transfer.read_header(path)
    if header.get("schema") != latest_version(POSTGRES_MIGRATIONS):
        raise InvalidRequest(
            f"the export is of schema version {header.get('schema')}, this roomsvc's is "
            f"{latest_version(POSTGRES_MIGRATIONS)}: import with the release that exported it"
        )
    total = sum(int(t.get("rows", 0)) for t in header["tables"].values())
    bar = ProgressBar("importing")
    done = [0]

    def told(table: str, rows: int) -> None:
        done[0] += rows
        bar.update(done[0], total)

    async def run() -> None:
        store = await open_store(settings)
        try:
            assert isinstance(store, PostgresStore)
            await store.import_rows(transfer.batches(path), identities=transfer.IDENTITIES, on_rows=told)
        finally:
            await store.close()

    asyncio.run(run())
    bar.update(done[0], total)
    bar.finish()
    print(f"imported {done[0]} rows into PostgreSQL: "
          + ", ".join(f"{t} {v.get('rows', 0)}" for t, v in header["tables"].items()))
    return 0
