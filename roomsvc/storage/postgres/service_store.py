"""PostgreSQL repository of service specs (:class:`~roomsvc.domain.service_catalog.ServiceRepository`),
the twin of :mod:`roomsvc.storage.sqlite.service_store`: writes go through the
group-commit writer with their audit line in the same transaction, reads through the pool.
"""

from __future__ import annotations

import json

import asyncpg

from roomsvc.domain.ports import AuditRecord
from roomsvc.domain.service_catalog import ServiceRecord
from roomsvc.errors import AlreadyExists
from roomsvc.storage.postgres.store import PostgresStore, _insert_audit, rowcount, sql

_COLS = "room, name, spec, created_by, created_at, updated_at"


class PostgresServiceStore:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def put_service(self, record: ServiceRecord, *, replace: bool, audit: AuditRecord) -> ServiceRecord:
        async def job(db: asyncpg.Connection) -> ServiceRecord:
            spec = json.dumps(record.spec, sort_keys=True)
            values = (record.room, record.name, spec, record.created_by, float(record.created_at), float(record.updated_at))
            if replace:
                await db.execute(
                    sql(
                        f"INSERT INTO services ({_COLS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room, name) DO UPDATE "
                        "SET spec = excluded.spec, created_by = excluded.created_by, updated_at = excluded.updated_at"
                    ),
                    *values,
                )
            else:
                try:
                    await db.execute(sql(f"INSERT INTO services ({_COLS}) VALUES (?, ?, ?, ?, ?, ?)"), *values)
                except asyncpg.UniqueViolationError as exc:
                    raise AlreadyExists(f"service {record.name!r} already exists in room {record.room!r}") from exc
            await _insert_audit(db, [audit])
            return record

        result: ServiceRecord = await self._store._write(job)
        return result

    async def get_service(self, room: str, name: str) -> ServiceRecord | None:
        rows = await self._store._read(f"SELECT {_COLS} FROM services WHERE room = ? AND name = ?", room, name)
        return _record(rows[0]) if rows else None

    async def list_services(self, room: str | None) -> list[ServiceRecord]:
        if room is None:
            rows = await self._store._read(f"SELECT {_COLS} FROM services ORDER BY room, name")
        else:
            rows = await self._store._read(f"SELECT {_COLS} FROM services WHERE room = ? ORDER BY name", room)
        return [_record(r) for r in rows]

    async def delete_service(self, room: str, name: str, *, audit: AuditRecord) -> bool:
        async def job(db: asyncpg.Connection) -> bool:
            gone = rowcount(await db.execute(sql("DELETE FROM services WHERE room = ? AND name = ?"), room, name))
            if gone:
                await _insert_audit(db, [audit])
            return bool(gone)

        result: bool = await self._store._write(job)
        return result


def _record(r: asyncpg.Record) -> ServiceRecord:
    return ServiceRecord(room=r[0], name=r[1], spec=json.loads(r[2]), created_by=r[3], created_at=r[4], updated_at=r[5])
