"""SQLite repository of service specs (:class:`~roomsvc.domain.service_catalog.ServiceRepository`).

It rides on :class:`~roomsvc.storage.sqlite.store.SqliteStore`: writes go through its
group-commit writer (with their audit line in the same transaction), reads through its
reader connection.
"""

from __future__ import annotations

import json
import sqlite3

import aiosqlite

from roomsvc.domain.ports import AuditRecord
from roomsvc.domain.service_catalog import ServiceRecord
from roomsvc.errors import AlreadyExists
from roomsvc.storage.sqlite.store import SqliteStore, _insert_audit

_COLS = "room, name, spec, created_by, created_at, updated_at"


class SqliteServiceStore:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def put_service(self, record: ServiceRecord, *, replace: bool, audit: AuditRecord) -> ServiceRecord:
        async def job(db: aiosqlite.Connection) -> ServiceRecord:
            spec = json.dumps(record.spec, sort_keys=True)
            if replace:
                await db.execute(
                    f"INSERT INTO services ({_COLS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room, name) DO UPDATE "
                    "SET spec = excluded.spec, created_by = excluded.created_by, updated_at = excluded.updated_at",
                    (record.room, record.name, spec, record.created_by, record.created_at, record.updated_at),
                )
            else:
                try:
                    await db.execute(
                        f"INSERT INTO services ({_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                        (record.room, record.name, spec, record.created_by, record.created_at, record.updated_at),
                    )
                except sqlite3.IntegrityError as exc:
                    raise AlreadyExists(f"service {record.name!r} already exists in room {record.room!r}") from exc
            await _insert_audit(db, [audit])
            return record

        return await self._store._write(job)

    async def get_service(self, room: str, name: str) -> ServiceRecord | None:
        rows = await self._store._read(f"SELECT {_COLS} FROM services WHERE room = ? AND name = ?", (room, name))
        return _record(rows[0]) if rows else None

    async def list_services(self, room: str | None) -> list[ServiceRecord]:
        if room is None:
            rows = await self._store._read(f"SELECT {_COLS} FROM services ORDER BY room, name")
        else:
            rows = await self._store._read(f"SELECT {_COLS} FROM services WHERE room = ? ORDER BY name", (room,))
        return [_record(r) for r in rows]

    async def delete_service(self, room: str, name: str, *, audit: AuditRecord) -> bool:
        async def job(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute("DELETE FROM services WHERE room = ? AND name = ?", (room, name))
            if cursor.rowcount:
                await _insert_audit(db, [audit])
            return bool(cursor.rowcount)

        return await self._store._write(job)


def _record(r: sqlite3.Row) -> ServiceRecord:
    return ServiceRecord(room=r[0], name=r[1], spec=json.loads(r[2]), created_by=r[3], created_at=r[4], updated_at=r[5])
