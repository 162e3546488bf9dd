"""``roomsvc export`` / ``roomsvc import``: a vault moved between engines, as it is.

The file is JSON lines: a header naming the format, the schema version and the columns
and row count of each table, then one line per row (``{"t": table, "r": [values]}``,
bytes as ``{"b64": ...}``). Encrypted values travel as stored (key id, wrapped data key,
ciphertext), the keys table with them (each key wrapped by the master key, which never
enters the file), and the audit log with its ids: the target decrypts everything with the
same master key, and nothing is decrypted on the way. Still, treat the file like a backup:
it is written 0600 and never over an existing file.

Pending OAuth consent flows (minutes-long, bound to a node's waiting request) are not
moved: their requesters ask again.

Engine-neutral: a store passes rows in and out through ``dump`` and ``import_rows``.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Protocol, Sequence

from roomsvc.errors import InvalidRequest, InvalidState

FORMAT = "roomsvc-export"
VERSION = 1

#: (table, columns, order); parents before children. A table that a migration adds must
#: be listed here (and in its twin migration) before export accepts a database holding it.
TABLES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("keys", ("id", "wrapped", "created_at", "active"), "created_at, id"),
    ("rooms", ("name", "created_at"), "name"),
    ("room_secrets", ("pk", "room", "owner", "secret_id", "delegated_to", "type", "name", "kind", "version",
                      "created_at", "updated_at"), "pk"),
    ("room_secret_versions", ("pk", "secret_pk", "version", "kek_id", "wrapped_dek", "ciphertext", "created_at"), "pk"),
    ("project_secrets", ("pk", "id", "name", "kind", "version", "created_at", "updated_at", "kek_id", "wrapped_dek",
                         "ciphertext"), "pk"),
    ("audit", ("pk", "time", "room", "actor", "owner", "secret_id", "action", "channel", "outcome", "detail"), "pk"),
    ("token_revocations", ("id", "kind", "value", "room", "revoked_before", "actor", "created_at"), "id"),
    ("llm_usage", ("pk", "time", "day", "room", "identity", "provider", "model", "input_tokens", "output_tokens",
                   "outcome", "stream"), "pk"),
    ("services", ("room", "name", "spec", "created_by", "created_at", "updated_at"), "room, name"),
)
#: tables deliberately left behind (see the module docstring)
NOT_MOVED = frozenset({"oauth_flows"})
#: identity columns the target continues after the ids it received
IDENTITIES = (("room_secrets", "pk"), ("room_secret_versions", "pk"), ("project_secrets", "pk"), ("audit", "pk"),
              ("token_revocations", "id"), ("llm_usage", "pk"))
#: columns stored as 0/1 by SQLite and as boolean by PostgreSQL
_BOOLEANS = {("keys", "active"), ("llm_usage", "stream")}
_BATCH = 500


class Source(Protocol):
    async def table_names(self) -> set[str]: ...
    async def count_rows(self, table: str) -> int: ...
    def dump(self, table: str, columns: Sequence[str], *, order_by: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]: ...


class Target(Protocol):
    async def import_rows(
        self,
        batches: Any,
        *,
        identities: Sequence[tuple[str, str]],
        on_rows: Callable[[str, int], None] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class Summary:
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


async def export(source: Source, path: Path, *, schema: int, on_rows: Callable[[int, int], None] | None = None) -> Summary:
    """Write every moved table of ``source`` to a new file ``path``; ``on_rows(done, total)``
    is told as rows are written. Stop the server first: rows written meanwhile may be missed.

    Raises:
        InvalidState: the database holds a table this roomsvc does not know how to move.
        InvalidRequest: ``path`` exists (it is never overwritten).
    """
    unknown = await source.table_names() - {t for t, _, _ in TABLES} - NOT_MOVED
    if unknown:
        raise InvalidState(
            f"the database has table(s) {sorted(unknown)} that roomsvc export does not move yet; "
            "nothing was written (update roomsvc/storage/transfer.py TABLES)"
        )
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise InvalidRequest(f"{str(path)!r} exists; export writes a new file only") from None
    counts = {t: await source.count_rows(t) for t, _, _ in TABLES}
    total = sum(counts.values())
    written: dict[str, int] = {}
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            header = {
                "format": FORMAT, "version": VERSION, "schema": schema,
                "tables": {t: {"columns": list(cols), "rows": counts.get(t, 0)} for t, cols, _ in TABLES},
            }
            out.write(json.dumps(header) + "\n")
            for table, columns, order in TABLES:
                written[table] = 0
                async for rows in source.dump(table, columns, order_by=order, batch=_BATCH):
                    for row in rows:
                        out.write(json.dumps({"t": table, "r": [_encode(v) for v in row]}) + "\n")
                    written[table] += len(rows)
                    if on_rows is not None:
                        on_rows(sum(written.values()), total)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Summary(written)


def read_header(path: Path) -> dict[str, Any]:
    """The header of an export file, checked.

    Raises:
        InvalidRequest: not an export file of a version this roomsvc reads.
    """
    try:
        with path.open(encoding="utf-8") as fh:
            header = json.loads(fh.readline())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"cannot read {str(path)!r} as a roomsvc export: {type(exc).__name__}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise InvalidRequest(f"{str(path)!r} is not a roomsvc export (format {FORMAT} version {VERSION})")
    tables = header.get("tables")
    if not isinstance(tables, dict) or set(tables) != {t for t, _, _ in TABLES}:
        raise InvalidRequest("the export's tables are not the ones this roomsvc moves; use the same roomsvc release")
    for table, columns, _ in TABLES:
        if tables[table].get("columns") != list(columns):
            raise InvalidRequest(f"the export's columns of {table} differ from this roomsvc's; use the same release")
    return header


def batches(path: Path) -> Iterator[tuple[str, Sequence[str], list[list[Any]]]]:
    """(table, columns, rows) of an export file, up to 500 rows at a time, in file order.

    Raises:
        InvalidRequest: a line that is not a row of a known table.
    """
    columns = {t: cols for t, cols, _ in TABLES}
    with path.open(encoding="utf-8") as fh:
        fh.readline()
        table: str | None = None
        rows: list[list[Any]] = []
        for number, line in enumerate(fh, start=2):
            try:
                item = json.loads(line)
                name, values = item["t"], item["r"]
                if name not in columns or len(values) != len(columns[name]):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                raise InvalidRequest(f"line {number} of the export is not a row roomsvc wrote; nothing was imported") from None
            if table is not None and (name != table or len(rows) >= _BATCH):
                yield table, columns[table], rows
                rows = []
            table = name
            rows.append([_decode(name, col, v) for col, v in zip(columns[name], values)])
        if table is not None and rows:
            yield table, columns[table], rows


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode(table: str, column: str, value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    if (table, column) in _BOOLEANS:
        return bool(value)
    return value
