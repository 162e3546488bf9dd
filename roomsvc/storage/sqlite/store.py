"""SQLite store: one writer connection with group commit, one reader connection.

Every write is a *job* (an async function of the writer connection). The writer task
takes every job waiting, runs each in its own SAVEPOINT inside one transaction and
commits once; each job's caller is answered only after that commit is durable
(``synchronous=FULL``). So a burst of requests shares one fsync, an audit line commits
in the same transaction as the change it records, and a failed commit fails every job
in the batch (fail closed). Reads use a second connection and, thanks to WAL, see only
committed data. Point reads of one indexed row on the hot path (a secret by its key) use a
third, read-only connection on the event loop's own thread instead (:meth:`_read_now`): a
WAL read of one row takes microseconds and never waits for the writer, while a trip through
aiosqlite's thread costs a queue hand-off and a loop wake-up (issue 12). Should it ever be
busy, the read goes through the reader connection as before.

aiosqlite and sqlite3 errors stop here: they are re-raised as roomsvc errors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

import aiosqlite

from roomsvc.domain.housekeeping import PruneReport
from roomsvc.domain.observe import NOOP, Observer
from roomsvc.domain.ports import (
    AuditRecord,
    EncryptedBlob,
    KeyRecord,
    ProjectSecretRecord,
    Revocation,
    RewrapItem,
    RoomRecord,
    SecretRecord,
)
from roomsvc.errors import AlreadyExists, Conflict, InvalidRequest, RoomsvcError, StorageError
from roomsvc.ids import Identity, RoomName, SecretId
from roomsvc.storage.migrate import MigrationProgress, latest_version, migrations, split_statements

log = logging.getLogger("roomsvc.storage")
# aiosqlite logs every call with its bound parameters at DEBUG (ciphertexts, wrapped
# keys, identities): never let a debug log level turn that on
logging.getLogger("aiosqlite").setLevel(logging.INFO)

T = TypeVar("T")
Job = Callable[[aiosqlite.Connection], Awaitable[Any]]

#: every table holding envelope-encrypted values (kek_id, wrapped_dek, ciphertext): key
#: rotation re-wraps them all and a key is retired only when none of them uses it
ENVELOPE_TABLES = ("room_secret_versions", "project_secrets", "oauth_flows")
_KEY_USES_SQL = "SELECT " + " + ".join(f"(SELECT count(*) FROM {t} WHERE kek_id = ?)" for t in ENVELOPE_TABLES)

_SECRET_COLS = "room, owner, secret_id, delegated_to, type, name, kind, version, created_at, updated_at"


def _operation(job: Job) -> str:
    """The store method a job belongs to: ``put_secret`` of ``SqliteStore.put_secret.<locals>.job``."""
    parts = getattr(job, "__qualname__", "write").split(".")
    return parts[-3] if len(parts) >= 3 else parts[-1]


def database_exists(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


class SqliteStore:
    """The embedded store. Open it with :meth:`open`; close it with :meth:`close`."""

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection, *, batch_max: int,
        observer: Observer = NOOP, point_reader: sqlite3.Connection | None = None,
    ) -> None:
        self.path = path
        #: write batches, their commit time and failures; a span per write (operations)
        self.observer = observer
        self._writer = writer
        self._reader = reader
        #: read-only, used on the loop's thread for one-row reads (None: every read via aiosqlite)
        self._point_reader = point_reader
        self._batch_max = batch_max
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: number of committed write batches (a figure for tests and metrics)
        self.commits = 0

    # -- life cycle -----------------------------------------------------------------

    @classmethod
    async def open(
        cls, path: Path, *, busy_timeout_ms: int = 5000, batch_max: int = 256, observer: Observer = NOOP,
        on_migration: MigrationProgress | None = None,
    ) -> "SqliteStore":
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # create the file ourselves so it is 0600 from its first byte; SQLite gives
            # the -wal and -shm files the same mode as the database
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
        try:
            writer = await _connect(path, busy_timeout_ms)
            reader = await _connect(path, busy_timeout_ms)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {str(path)!r}: {exc}") from exc
        store = cls(path, writer, reader, batch_max=batch_max, observer=observer)
        await store._migrate(on_migration)
        try:
            store._point_reader = _connect_point_reader(path)
        except sqlite3.Error as exc:
            await reader.close()
            await writer.close()
            raise StorageError(f"cannot open database {str(path)!r}: {exc}") from exc
        store._task = asyncio.get_running_loop().create_task(store._writer_loop(), name="sqlite-writer")
        return store

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            log.warning("WAL checkpoint at close failed", exc_info=True)
        if self._point_reader is not None:
            self._point_reader.close()
            self._point_reader = None
        await self._reader.close()
        await self._writer.close()

    async def pragmas(self) -> dict[str, Any]:
        out = {}
        for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
            row = await (await self._writer.execute(f"PRAGMA {name}")).fetchone()
            out[name] = row[0] if row else None
        return out

    async def _migrate(self, on_migration: MigrationProgress | None = None) -> None:
        row = await (await self._writer.execute("PRAGMA user_version")).fetchone()
        current = int(row[0]) if row else 0
        latest = latest_version()
        if current > latest:
            raise StorageError(
                f"database schema version {current} is newer than this roomsvc knows ({latest}); "
                "run the roomsvc release that wrote it"
            )
        for number, name, sql in migrations():
            if number <= current:
                continue
            log.info("applying migration %s", name)
            if on_migration is not None:
                on_migration(number, name, latest)
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                for statement in split_statements(sql):
                    await self._writer.execute(statement)
                await self._writer.execute(f"PRAGMA user_version = {number}")
                await self._writer.execute("COMMIT")
            except sqlite3.Error as exc:
                await self._writer.execute("ROLLBACK")
                raise StorageError(f"migration {name} failed: {exc}") from exc

    # -- the write path -------------------------------------------------------------------

    def queue_depth(self) -> int:
        """Writes waiting for the writer (how far the audit writer lags; a metrics gauge)."""
        return self._queue.qsize()

    async def _write(self, job: Job) -> Any:
        if self._closed:
            raise StorageError("the store is closed")
        # the span covers the wait for the group commit, in the caller's trace; its name is
        # the store method's ("put_secret" of "SqliteStore.put_secret.<locals>.job")
        with self.observer.span("storage.transaction", operation=_operation(job)):
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            await self._queue.put((job, future))
            return await future

    async def _writer_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._run_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run_batch(self, batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        db = self._writer
        began = time.perf_counter()
        # audit appends of the batch go in as one statement, without a savepoint each: one
        # trip through aiosqlite's thread instead of three per line (issue 12); their callers
        # still wait for the COMMIT, so every line is durable before its answer leaves
        appends = [(job, future) for job, future in batch if isinstance(job, _AuditAppend)]
        others = [(job, future) for job, future in batch if not isinstance(job, _AuditAppend)]
        try:
            lines = [r for job, _ in appends for r in job.records]
            if not others:
                # only audit lines (header resolution, reads): BEGIN, the insert and the
                # COMMIT in one trip through aiosqlite's thread instead of three, so the
                # batch does not wait three times behind a busy event loop (issue 12)
                await _on_thread(db, _commit_audit_now, lines)
                outcomes.extend((future, None, None) for _, future in appends)
                others_done = True
            else:
                await db.execute("BEGIN IMMEDIATE")
                if appends:
                    await _insert_audit(db, lines)
                    outcomes.extend((future, None, None) for _, future in appends)
                others_done = False
            for job, future in others:
                await db.execute("SAVEPOINT job")
                try:
                    result = await job(db)
                except Exception as exc:  # the job's own failure: undo just that job
                    await db.execute("ROLLBACK TO job")
                    await db.execute("RELEASE job")
                    outcomes.append((future, None, exc))
                else:
                    await db.execute("RELEASE job")
                    outcomes.append((future, result, None))
            if not others_done:
                await db.execute("COMMIT")
            self.commits += 1
            self.observer.write_batch(len(batch), time.perf_counter() - began)
        except Exception as exc:  # noqa: BLE001 - the writer task must never die
            # sqlite3 errors (disk full, I/O, a failed COMMIT) and anything else outside
            # a job (e.g. the connection gone) fail the whole batch: nothing of it was
            # committed, and every caller hears so instead of waiting forever. (sqlite3
            # messages name constraints and files, never bound values.)
            reason = str(exc) if isinstance(exc, sqlite3.Error) else type(exc).__name__
            log.error("write batch of %d failed: %s", len(batch), reason)
            self.observer.storage_error("write")
            try:
                await db.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - no transaction left to roll back
                pass
            for _, future in batch:
                if not future.done():
                    error = StorageError("the database could not store this change; nothing was written")
                    error.__cause__ = exc
                    future.set_exception(error)
            return
        for future, result, failure in outcomes:
            if future.done():
                continue
            if failure is None:
                future.set_result(result)
            elif isinstance(failure, RoomsvcError):
                future.set_exception(failure)
            else:
                self.observer.storage_error("write")  # the database refused one write (the others committed)
                wrapped = StorageError(f"storage error: {type(failure).__name__}")
                wrapped.__cause__ = failure
                future.set_exception(wrapped)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            self.observer.storage_error("read")
            raise StorageError(f"storage read failed: {type(exc).__name__}") from exc

    async def _read_now(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A read of at most a few indexed rows, run at once on the loop's thread (no trip
        through aiosqlite's); through :meth:`_read` when the point reader is busy or absent."""
        db = self._point_reader
        if db is not None:
            try:
                cursor = db.execute(sql, params)
                try:
                    return cursor.fetchall()
                finally:
                    cursor.close()  # ends the statement and its read snapshot now
            except sqlite3.OperationalError:
                pass  # busy (a checkpoint, a recovery): the reader connection waits for it
            except sqlite3.Error as exc:
                self.observer.storage_error("read")
                raise StorageError(f"storage read failed: {type(exc).__name__}") from exc
        return await self._read(sql, params)

    # -- rooms ---------------------------------------------------------------------------

    async def get_room(self, name: RoomName) -> RoomRecord | None:
        rows = await self._read("SELECT name, created_at FROM rooms WHERE name = ?", (name,))
        return RoomRecord(RoomName(rows[0][0]), rows[0][1]) if rows else None

    async def create_room(self, name: RoomName, *, created_at: float) -> RoomRecord:
        async def job(db: aiosqlite.Connection) -> RoomRecord:
            try:
                await db.execute("INSERT INTO rooms (name, created_at) VALUES (?, ?)", (name, created_at))
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"room {name!r} already exists") from exc
            return RoomRecord(name, created_at)

        return await self._write(job)

    async def ensure_room(self, name: RoomName, *, created_at: float) -> RoomRecord:
        async def job(db: aiosqlite.Connection) -> None:
            await db.execute("INSERT OR IGNORE INTO rooms (name, created_at) VALUES (?, ?)", (name, created_at))

        await self._write(job)
        room = await self.get_room(name)
        assert room is not None
        return room

    async def list_rooms(self) -> list[RoomRecord]:
        rows = await self._read("SELECT name, created_at FROM rooms ORDER BY name")
        return [RoomRecord(RoomName(r[0]), r[1]) for r in rows]

    # -- room secrets ----------------------------------------------------------------------

    async def get_secret(
        self, room: RoomName, owner: Identity, id: SecretId, delegated_to: Identity | None
    ) -> tuple[SecretRecord, EncryptedBlob] | None:
        rows = await self._read_now(
            f"SELECT {_prefixed('s.', _SECRET_COLS)}, v.kek_id, v.wrapped_dek, v.ciphertext "
            "FROM room_secrets s JOIN room_secret_versions v ON v.secret_pk = s.pk AND v.version = s.version "
            "WHERE s.room = ? AND s.owner = ? AND s.secret_id = ? AND s.delegated_to = ?",
            (room, owner, id, delegated_to or ""),
        )
        if not rows:
            return None
        r = rows[0]
        return _secret_record(r), EncryptedBlob(r[10], bytes(r[11]), bytes(r[12]))

    async def find_delegated(self, room: RoomName, id: SecretId, delegate: Identity) -> list[SecretRecord]:
        rows = await self._read(
            f"SELECT {_SECRET_COLS} FROM room_secrets WHERE room = ? AND secret_id = ? AND delegated_to = ? "
            "ORDER BY updated_at DESC",
            (room, id, delegate),
        )
        return [_secret_record(r) for r in rows]

    async def put_secret(
        self,
        record: SecretRecord,
        blob: EncryptedBlob,
        *,
        previous_version: int,
        max_versions: int,
        audit: AuditRecord,
    ) -> SecretRecord:
        key = (record.room, record.owner, record.id, record.delegated_to or "")

        async def job(db: aiosqlite.Connection) -> SecretRecord:
            row = await (
                await db.execute(
                    "SELECT pk, version, created_at FROM room_secrets "
                    "WHERE room = ? AND owner = ? AND secret_id = ? AND delegated_to = ?",
                    key,
                )
            ).fetchone()
            current = row[1] if row else 0
            if current != previous_version:
                raise Conflict(f"secret {record.id!r} is at version {current}, not {previous_version}")
            if row is None:
                cursor = await db.execute(
                    f"INSERT INTO room_secrets ({_SECRET_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*key, record.type, record.name, record.kind, record.version, record.created_at, record.updated_at),
                )
                pk = cursor.lastrowid
                created_at = record.created_at
            else:
                pk, created_at = row[0], row[2]
                await db.execute(
                    "UPDATE room_secrets SET type = ?, name = ?, kind = ?, version = ?, updated_at = ? WHERE pk = ?",
                    (record.type, record.name, record.kind, record.version, record.updated_at, pk),
                )
            await db.execute(
                "INSERT INTO room_secret_versions (secret_pk, version, kek_id, wrapped_dek, ciphertext, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (pk, record.version, blob.kek_id, blob.wrapped_dek, blob.ciphertext, record.updated_at),
            )
            await db.execute(
                "DELETE FROM room_secret_versions WHERE secret_pk = ? AND version <= ?",
                (pk, record.version - max_versions),
            )
            await _insert_audit(db, [audit])
            return SecretRecord(**{**record.__dict__, "created_at": created_at})

        return await self._write(job)

    async def list_secrets(self, room: RoomName, owner: Identity) -> list[SecretRecord]:
        rows = await self._read(
            f"SELECT {_SECRET_COLS} FROM room_secrets WHERE room = ? AND owner = ? ORDER BY secret_id, delegated_to",
            (room, owner),
        )
        return [_secret_record(r) for r in rows]

    async def delete_secret(
        self, room: RoomName, owner: Identity, id: SecretId, delegated_to: Identity | None, *, audit: AuditRecord
    ) -> bool:
        async def job(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(
                "DELETE FROM room_secrets WHERE room = ? AND owner = ? AND secret_id = ? AND delegated_to = ?",
                (room, owner, id, delegated_to or ""),
            )
            await _insert_audit(db, [audit])
            return cursor.rowcount > 0

        return await self._write(job)

    async def list_versions(
        self, room: RoomName, owner: Identity, id: SecretId, delegated_to: Identity | None
    ) -> list[tuple[int, float]]:
        rows = await self._read(
            "SELECT v.version, v.created_at FROM room_secret_versions v JOIN room_secrets s ON s.pk = v.secret_pk "
            "WHERE s.room = ? AND s.owner = ? AND s.secret_id = ? AND s.delegated_to = ? ORDER BY v.version",
            (room, owner, id, delegated_to or ""),
        )
        return [(r[0], r[1]) for r in rows]

    # -- project secrets -------------------------------------------------------------------

    async def put_project_secret(
        self, record: ProjectSecretRecord, blob: EncryptedBlob, *, audit: AuditRecord
    ) -> ProjectSecretRecord:
        async def job(db: aiosqlite.Connection) -> ProjectSecretRecord:
            row = await (await db.execute("SELECT version, kind, created_at FROM project_secrets WHERE id = ?", (record.id,))).fetchone()
            if row is not None and row[1] != record.kind:
                raise Conflict(f"project secret {record.id!r} exists with another type ({row[1]})")
            if row is not None and row[0] != record.version - 1:
                raise Conflict(f"project secret {record.id!r} changed meanwhile; retry")
            created = row[2] if row else record.created_at
            await db.execute(
                "INSERT INTO project_secrets (id, name, kind, version, created_at, updated_at, kek_id, wrapped_dek, ciphertext) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                "version = excluded.version, updated_at = excluded.updated_at, kek_id = excluded.kek_id, "
                "wrapped_dek = excluded.wrapped_dek, ciphertext = excluded.ciphertext",
                (record.id, record.name, record.kind, record.version, created, record.updated_at,
                 blob.kek_id, blob.wrapped_dek, blob.ciphertext),
            )
            await _insert_audit(db, [audit])
            return ProjectSecretRecord(**{**record.__dict__, "created_at": created})

        return await self._write(job)

    async def get_project_secret(self, id: str) -> tuple[ProjectSecretRecord, EncryptedBlob] | None:
        rows = await self._read(
            "SELECT id, name, kind, version, created_at, updated_at, kek_id, wrapped_dek, ciphertext "
            "FROM project_secrets WHERE id = ?",
            (id,),
        )
        if not rows:
            return None
        r = rows[0]
        return ProjectSecretRecord(r[0], r[1], r[2], r[3], r[4], r[5]), EncryptedBlob(r[6], bytes(r[7]), bytes(r[8]))

    async def list_project_secrets(self, kind: str | None = None) -> list[ProjectSecretRecord]:
        sql = "SELECT id, name, kind, version, created_at, updated_at FROM project_secrets"
        rows = await self._read(sql + (" WHERE kind = ? ORDER BY id" if kind else " ORDER BY id"), (kind,) if kind else ())
        return [ProjectSecretRecord(*r) for r in rows]

    async def delete_project_secret(self, id: str, *, audit: AuditRecord) -> bool:
        async def job(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute("DELETE FROM project_secrets WHERE id = ?", (id,))
            await _insert_audit(db, [audit])
            return cursor.rowcount > 0

        return await self._write(job)

    # -- audit ----------------------------------------------------------------------------

    async def append(self, records: Sequence[AuditRecord]) -> None:
        await self._write(_AuditAppend(records))

    async def query(
        self, *, room: str | None = None, identity: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        where: list[str] = []
        params: list[Any] = []
        if room is not None:
            where.append("room = ?")
            params.append(room)
        if identity is not None:
            where.append("(actor = ? OR owner = ?)")
            params += [identity, identity]
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        sql = "SELECT time, room, actor, owner, secret_id, action, channel, outcome, detail FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._read(sql + " ORDER BY pk DESC LIMIT ?", (*params, limit))
        return [AuditRecord(*r) for r in reversed(rows)]

    async def count_audit(self, *, before: float) -> PruneReport:
        rows = await self._read(
            "SELECT action, count(*), min(time), max(time) FROM audit WHERE time < ? GROUP BY action", (before,)
        )
        return _prune_report(before, [(r[0], r[1], r[2], r[3]) for r in rows])

    async def prune_audit(self, *, before: float, batch: int, audit: AuditRecord | None) -> PruneReport:
        """One batch, one job of the group-commit writer: concurrent audit writes queue
        behind it for one short transaction at most, and are never touched (they are
        younger than ``before``)."""

        async def job(db: aiosqlite.Connection) -> PruneReport:
            if audit is not None:
                await _insert_audit(db, [audit])
            rows = await db.execute_fetchall(
                "DELETE FROM audit WHERE pk IN (SELECT pk FROM audit WHERE time < ? ORDER BY time, pk LIMIT ?) "
                "RETURNING action, time",
                (before, batch),
            )
            return _prune_report(before, [(r[0], 1, r[1], r[1]) for r in rows])

        report: PruneReport = await self._write(job)
        return report

    # -- token revocations ------------------------------------------------------------------

    async def add_revocation(self, revocation: Revocation, *, audit: AuditRecord) -> None:
        async def job(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO token_revocations (kind, value, room, revoked_before, actor, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (revocation.kind, revocation.value, revocation.room, revocation.revoked_before, revocation.actor,
                 revocation.created_at),
            )
            await _insert_audit(db, [audit])

        await self._write(job)

    async def list_revocations(self) -> list[Revocation]:
        rows = await self._read(
            "SELECT kind, value, room, revoked_before, actor, created_at FROM token_revocations ORDER BY id"
        )
        return [Revocation(*r) for r in rows]

    # -- keys -------------------------------------------------------------------------------

    async def list_keys(self) -> list[KeyRecord]:
        rows = await self._read("SELECT id, wrapped, created_at, active FROM keys ORDER BY created_at, id")
        return [KeyRecord(r[0], bytes(r[1]), r[2], bool(r[3])) for r in rows]

    async def add_key(self, key: KeyRecord) -> None:
        async def job(db: aiosqlite.Connection) -> None:
            if key.active:
                await db.execute("UPDATE keys SET active = 0")
            await db.execute(
                "INSERT INTO keys (id, wrapped, created_at, active) VALUES (?, ?, ?, ?)",
                (key.id, key.wrapped, key.created_at, int(key.active)),
            )

        await self._write(job)

    async def delete_key(self, key_id: str) -> None:
        async def job(db: aiosqlite.Connection) -> None:
            if await _key_uses(db, key_id):
                raise Conflict(f"key {key_id!r} still protects stored secrets; rotate first")
            row = await (await db.execute("SELECT active FROM keys WHERE id = ?", (key_id,))).fetchone()
            if row and row[0]:
                raise Conflict(f"key {key_id!r} is the active key; rotate to a new key before retiring it")
            await db.execute("DELETE FROM keys WHERE id = ?", (key_id,))

        await self._write(job)

    async def count_key_uses(self, key_id: str) -> int:
        rows = await self._read(
            _KEY_USES_SQL,
            (key_id,) * len(ENVELOPE_TABLES),
        )
        return int(rows[0][0])

    async def blobs_using(self, key_id: str, *, batch: int) -> AsyncIterator[list[RewrapItem]]:
        for table in ENVELOPE_TABLES:
            last = 0
            while True:
                rows = await self._read(
                    f"SELECT rowid, kek_id, wrapped_dek, ciphertext FROM {table} "
                    "WHERE kek_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                    (key_id, last, batch),
                )
                if not rows:
                    break
                last = rows[-1][0]
                yield [RewrapItem(table, r[0], EncryptedBlob(r[1], bytes(r[2]), bytes(r[3]))) for r in rows]

    async def replace_blobs(self, items: Sequence[tuple[RewrapItem, EncryptedBlob]]) -> int:
        async def job(db: aiosqlite.Connection) -> int:
            changed = 0
            for item, blob in items:
                if item.table not in ENVELOPE_TABLES:
                    raise ValueError(item.table)
                cursor = await db.execute(
                    f"UPDATE {item.table} SET kek_id = ?, wrapped_dek = ? WHERE rowid = ? AND kek_id = ? AND wrapped_dek = ?",
                    (blob.kek_id, blob.wrapped_dek, item.row_id, item.blob.kek_id, item.blob.wrapped_dek),
                )
                changed += cursor.rowcount
            return changed

        return await self._write(job)

    # -- export (roomsvc export, issue 15) --------------------------------------------------

    async def table_names(self) -> set[str]:
        rows = await self._read("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return {r[0] for r in rows}

    async def count_rows(self, table: str) -> int:
        rows = await self._read(f"SELECT count(*) FROM {table}")
        return int(rows[0][0])

    async def dump(self, table: str, columns: Sequence[str], *, order_by: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Every row of ``table`` (the named columns), ``batch`` rows at a time, in ``order_by`` order."""
        offset = 0
        while True:
            rows = await self._read(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order_by} LIMIT ? OFFSET ?", (batch, offset)
            )
            if not rows:
                return
            offset += len(rows)
            yield [tuple(r) for r in rows]

    # -- backup -----------------------------------------------------------------------------

    async def backup(self, name: str, *, directory: Path) -> str:
        """A consistent copy made with SQLite's backup API while the server runs, written
        only inside ``directory`` (see :func:`backup_target`); returns where it went.

        Raises:
            InvalidRequest: a name that would leave the directory.
            AlreadyExists: the file exists (it is never overwritten).
        """
        target = backup_target(directory, name)
        try:
            # O_EXCL fails on any existing name, a symlink (even a dangling one) included
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        except FileExistsError:
            raise AlreadyExists(f"backup {name[:80]!r} already exists; choose a new name") from None
        try:
            # a connection of its own, so reads are not held up while pages are copied;
            # one step (all pages at once) copies a consistent snapshot while writes go
            # on (WAL); the copy is then made a single self-contained file
            async with aiosqlite.connect(self.path) as source, aiosqlite.connect(target) as dest:
                await source.backup(dest)
                await dest.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.Error as exc:
            target.unlink(missing_ok=True)
            raise StorageError(f"backup failed: {exc}") from exc
        return str(target)


def backup_target(directory: Path, name: str) -> Path:
    """Where backup ``name`` goes: a path inside ``directory`` (created, mode 0700).

    A relative name resolves inside the directory; an absolute one must already be
    inside it. Every part must be a plain file name (letters, digits, ``.``, ``_``, ``-``,
    not starting with ``.``), so ``..`` and hidden files are out, and the parent, with
    symlinks followed, must be the directory or an existing folder inside it.

    Raises:
        InvalidRequest: any other name.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    base = directory.resolve(strict=True)
    if not isinstance(name, str) or not name or "\0" in name:
        raise InvalidRequest("name the backup file, e.g. roomsvc-2025-01-31.db")
    given = Path(name)
    if given.is_absolute():
        if not given.parent.resolve().is_relative_to(base):
            raise InvalidRequest(f"backups are written only inside {base} (server.backup_dir); give a file name")
        given = given.parent.resolve().relative_to(base) / given.name
    if not given.parts or not all(_BACKUP_PART.fullmatch(part) for part in given.parts):
        raise InvalidRequest("a backup name is a file name in server.backup_dir (letters, digits, '.', '_', '-')")
    target = base / given
    parent = target.parent.resolve()
    if not parent.is_relative_to(base) or not parent.is_dir():
        raise InvalidRequest(f"backups are written only inside {base} (server.backup_dir), into folders that exist")
    return parent / target.name


_BACKUP_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


async def _connect(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("PRAGMA foreign_keys = ON")
    await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return db


def _connect_point_reader(path: Path) -> sqlite3.Connection:
    """The loop thread's read-only connection: never waits on a lock (busy -> the caller
    falls back to the reader connection), never writes."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=True, cached_statements=64)
    db.execute("PRAGMA busy_timeout = 0")
    db.execute("PRAGMA query_only = ON")
    return db


class _AuditAppend:
    """A write job that only appends audit lines: the writer merges these per batch."""

    __slots__ = ("records",)

    def __init__(self, records: Sequence[AuditRecord]) -> None:
        self.records = list(records)

    async def __call__(self, db: aiosqlite.Connection) -> None:
        await _insert_audit(db, self.records)


_INSERT_AUDIT = (
    "INSERT INTO audit (time, room, actor, owner, secret_id, action, channel, outcome, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _audit_rows(records: Sequence[AuditRecord]) -> list[tuple[Any, ...]]:
    return [(r.time, r.room, r.actor, r.owner, r.secret_id, r.action, r.channel, r.outcome, r.detail) for r in records]


async def _insert_audit(db: aiosqlite.Connection, records: Sequence[AuditRecord]) -> None:
    await db.executemany(_INSERT_AUDIT, _audit_rows(records))


def _commit_audit_now(conn: sqlite3.Connection, records: Sequence[AuditRecord]) -> None:
    """On the writer's thread: one transaction of audit lines, committed (fsync) before it
    returns; rolled back on any failure, which the caller reports for the whole batch."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT_AUDIT, _audit_rows(records))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


async def _on_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3 connection, *args)`` on the connection's own thread, in one trip.
    aiosqlite has no public call for this; ``_execute`` is what each of its methods uses
    (this is the one place that relies on it: tests/vault and tests/ops cover it)."""
    result: T = await db._execute(lambda: fn(db._conn, *args))
    return result


async def _key_uses(db: aiosqlite.Connection, key_id: str) -> int:
    row = await (
        await db.execute(
            _KEY_USES_SQL,
            (key_id,) * len(ENVELOPE_TABLES),
        )
    ).fetchone()
    return int(row[0]) if row else 0


def _prune_report(before: float, rows: Sequence[tuple[str, int, float, float]]) -> PruneReport:
    """(action, count, oldest, newest) rows summed into one report."""
    by_action: dict[str, int] = {}
    for action, count, _, _ in rows:
        by_action[action] = by_action.get(action, 0) + count
    return PruneReport(
        cutoff=before, deleted=sum(by_action.values()), oldest=min((r[2] for r in rows), default=None),
        newest=max((r[3] for r in rows), default=None), by_action=by_action,
    )


def _prefixed(prefix: str, cols: str) -> str:
    return ", ".join(prefix + c.strip() for c in cols.split(","))


def _secret_record(r: Sequence[Any]) -> SecretRecord:
    return SecretRecord(
        room=RoomName(r[0]),
        owner=Identity(r[1]),
        id=SecretId(r[2]),
        delegated_to=Identity(r[3]) if r[3] else None,
        type=r[4],
        name=r[5],
        kind=r[6],
        version=r[7],
        created_at=r[8],
        updated_at=r[9],
    )
