"""Benchmark: vault writes and reads per second, SQLite against PostgreSQL, in one run.

Opens the vault services over each engine's store in process (SQLite in a temporary
directory, PostgreSQL in a database created for the run on ROOMSVC_TEST_POSTGRES, default
127.0.0.1:5432 user postgres, and dropped after), then for a fixed number of operations at
a fixed concurrency measures secret writes (each with its audit line, group-committed)
and secret reads (each with its audit line). Prints operations per second, the writes per
commit (the group-commit factor), and PostgreSQL's ratio to SQLite.

    .venv/bin/python bench/storage.py [--ops 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roomsvc.storage.postgres.store import Connector, PostgresStore  # noqa: E402
from roomsvc.storage.sqlite.store import SqliteStore  # noqa: E402
from tests.support import postgres  # noqa: E402
from tests.vault.conftest import principal, vault_on  # noqa: E402

ALICE = principal("alice", "room1", "secrets")


async def measure(store: object, path: Path, ops: int, concurrency: int) -> dict[str, float]:
    vault = await vault_on(store, path)
    try:
        gate = asyncio.Semaphore(concurrency)

        async def write(i: int) -> None:
            async with gate:
                await vault.secrets.set(ALICE, "room1", secret_id=f"s{i}", value=b"v" * 64, channel="bench")

        async def read(i: int) -> None:
            async with gate:
                await vault.secrets.get(ALICE, "room1", secret_id=f"s{i}", channel="bench")

        commits = vault.store.commits
        started = time.perf_counter()
        await asyncio.gather(*(write(i) for i in range(ops)))
        write_s = time.perf_counter() - started
        used = vault.store.commits - commits
        started = time.perf_counter()
        await asyncio.gather(*(read(i) for i in range(ops)))
        read_s = time.perf_counter() - started
        return {"writes/s": ops / write_s, "reads/s": ops / read_s, "writes/commit": ops / max(1, used)}
    finally:
        await vault.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        results["sqlite"] = await measure(await SqliteStore.open(path), path, args.ops, args.concurrency)
        if not postgres.available():
            print(f"PostgreSQL is not reachable at {postgres.ADMIN_DSN}: SQLite figures only")
        else:
            with postgres.database("roomsvc_bench") as dsn:
                store = await PostgresStore.open(Connector(dsn, password=None, connect_timeout=5, command_timeout=60))
                results["postgres"] = await measure(store, path, args.ops, args.concurrency)
    print(f"{args.ops} operations at concurrency {args.concurrency}")
    print(f"{'engine':10} {'writes/s':>10} {'reads/s':>10} {'writes/commit':>14}")
    for engine, r in results.items():
        print(f"{engine:10} {r['writes/s']:10.0f} {r['reads/s']:10.0f} {r['writes/commit']:14.1f}")
    if "postgres" in results:
        pg, lite = results["postgres"], results["sqlite"]
        print(f"postgres / sqlite: writes x{pg['writes/s'] / lite['writes/s']:.2f}, reads x{pg['reads/s'] / lite['reads/s']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
