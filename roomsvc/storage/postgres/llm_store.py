"""PostgreSQL repository of LLM usage (:class:`~roomsvc.domain.llm.ports.UsageRepository`),
the twin of :mod:`roomsvc.storage.sqlite.llm_store`: a usage row and the audit line of
the same call are one job of the group-commit writer; reads go through the reader pool.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from roomsvc.domain.llm.ports import UsageRow, UsageSummary
from roomsvc.domain.ports import AuditRecord
from roomsvc.storage.postgres.store import PostgresStore, _insert_audit, sql


class PostgresUsageStore:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def record_usage(self, row: UsageRow, audit: AuditRecord) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute(
                sql(
                    "INSERT INTO llm_usage (time, day, room, identity, provider, model, input_tokens, output_tokens, "
                    "outcome, stream) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                float(row.time), row.day, row.room, row.identity, row.provider, row.model, int(row.input_tokens),
                int(row.output_tokens), row.outcome, bool(row.stream),
            )
            await _insert_audit(db, [audit])

        await self._store._write(job)

    async def day_total(self, day: str, *, identity: str | None = None, room: str | None = None) -> int:
        column, value = ("identity", identity) if identity is not None else ("room", room)
        rows = await self._store._read(
            f"SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM llm_usage WHERE {column} = ? AND day = ?",
            value, day,
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
            params.append(float(since))
        text = ("SELECT room, identity, provider, model, count(*), sum(input_tokens), sum(output_tokens), min(time), "
                "max(time) FROM llm_usage")
        if where:
            text += " WHERE " + " AND ".join(where)
        text += " GROUP BY room, identity, provider, model ORDER BY room, identity, provider, model"
        # sum(bigint) is numeric in PostgreSQL: back to int, as SQLite gives it
        return [
            UsageSummary(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), r[7], r[8])
            for r in await self._store._read(text, *params)
        ]
