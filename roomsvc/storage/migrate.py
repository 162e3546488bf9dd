"""Numbered, forward-only migrations: ``<package>/NNNN_name.sql``, each in one transaction.

Each engine has its own migrations package with the same numbers and names (SQLite's in
``roomsvc/storage/migrations``, PostgreSQL's twins in ``roomsvc/storage/postgres/migrations``);
the engine's store applies them and records the schema version its own way.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Callable

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")

#: the migrations package of each engine (a folder of .sql files inside roomsvc)
SQLITE_MIGRATIONS = "roomsvc.storage.migrations"
POSTGRES_MIGRATIONS = "roomsvc.storage.postgres.migrations"


#: told (number, file name, latest number) before each migration is applied: CLI progress
MigrationProgress = Callable[[int, str, int], None]


def migrations(package: str = SQLITE_MIGRATIONS) -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration in ``package``, in order."""
    parent, _, folder = package.rpartition(".")
    found = []
    for entry in resources.files(parent).joinpath(folder).iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations in {package} are not numbered 1..n: {numbers}")
    return found


def latest_version(package: str = SQLITE_MIGRATIONS) -> int:
    return len(migrations(package))


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements (they contain no semicolons inside literals)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
