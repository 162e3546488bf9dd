"""SQLite repository of LLM usage (:class:`~roomsvc.domain.llm.ports.UsageRepository`).

It rides on :class:`~roomsvc.storage.sqlite.store.SqliteStore`: a usage row and the audit
line of the same call are one job of its group-commit writer (one transaction, shared
with whatever else is waiting, one fsync); reads go through its reader connection.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from roomsvc.domain.llm.ports import UsageRow, UsageSummary
from roomsvc.domain.ports import AuditRecord
from roomsvc.storage.sqlite.store import SqliteStore, _insert_audit


class SqliteUsageStore:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def record_usage(self, row: UsageRow, audit: AuditRecord) -> None:
        async def job(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO llm_usage (time, day, room, identity, provider, model, input_tokens, output_tokens, "
                "outcome, stream) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.time, row.day, row.room, row.identity, row.provider, row.model, row.input_tokens,
                 row.output_tokens, row.outcome, int(row.stream)),
            )
            await _insert_audit(db, [audit])

        await self._store._write(job)

    async def day_total(self, day: str, *, identity: str | None = None, room: str | None = None) -> int:
        column, value = ("identity", identity) if identity is not None else ("room", room)
        rows = await self._store._read(
            f"SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM llm_usage WHERE {column} = ? AND day = ?",
            (value, day),
        )
        return int(rows[0][0])

    async def usage_report(
        self, *, room: str | None = None, identity: str | None = None, since: float | None = None
    ) -> list[UsageSummary]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("room", room), ("identity", identity)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        sql = ("SELECT room, identity, provider, model, count(*), sum(input_tokens), sum(output_tokens), min(time), "
               "max(time) FROM llm_usage")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY room, identity, provider, model ORDER BY room, identity, provider, model"
        return [UsageSummary(*r) for r in await self._store._read(sql, params)]
