"""Numbered, forward-only migrations: ``migrations/NNNN_name.sql``, each in one transaction."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration shipped with roomsvc, in order."""
    found = []
    for entry in resources.files("roomsvc.storage").joinpath("migrations").iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {numbers}")
    return found


def latest_version() -> int:
    return len(migrations())


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements (they contain no semicolons inside literals)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
