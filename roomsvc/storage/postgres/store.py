"""PostgreSQL store on asyncpg: the same ports as the SQLite store, for several nodes.

Writes keep SQLite's group commit: every write is a *job* (an async function of the
writer connection); one writer task takes every job waiting, runs each in its own
savepoint inside one transaction and commits once, answering each caller only after
that commit. An audit line commits in the same transaction as the change it records, a
failing job undoes only itself, and a failed commit fails every job of the batch (fail
closed). Reads go through a small pool and, at READ COMMITTED, see committed data only
(another node's writes included, as soon as they commit).

Several nodes write the same database: compare-and-swap writes lock the row they read
(``SELECT ... FOR UPDATE``) and an insert race ends on a unique constraint, so a lost
race is a :class:`~roomsvc.errors.Conflict` as on SQLite. A job chosen as a deadlock or
serialization victim is re-run in a fresh savepoint (a few times) before it fails.

asyncpg and PostgreSQL errors stop here: they are re-raised as roomsvc errors. Their
messages name constraints and tables, never bound values.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence

import asyncpg

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
from roomsvc.storage.migrate import POSTGRES_MIGRATIONS, MigrationProgress, latest_version, migrations

log = logging.getLogger("roomsvc.storage")

Job = Callable[[asyncpg.Connection], Awaitable[Any]]

#: every table holding envelope-encrypted values (kek_id, wrapped_dek, ciphertext): key
#: rotation re-wraps them all and a key is retired only when none of them uses it
ENVELOPE_TABLES = ("room_secret_versions", "project_secrets", "oauth_flows")
_KEY_USES_SQL = "SELECT " + " + ".join(f"(SELECT count(*) FROM {t} WHERE kek_id = ?)" for t in ENVELOPE_TABLES)
_SECRET_COLS = "room, owner, secret_id, delegated_to, type, name, kind, version, created_at, updated_at"

#: pg_advisory_lock key held while migrations run, so nodes starting together take turns
_MIGRATION_LOCK = 0x726F6F6D737663  # "roomsvc"
#: a job that loses a deadlock or serialization race is re-run this many times
_JOB_RETRIES = 3
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
#: failures of the connection itself: the batch's outcome is unknown, the connection is replaced
_CONNECTION_LOST = (
    OSError, asyncio.TimeoutError, asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
)


def _operation(job: Job) -> str:
    """The store method a job belongs to: ``put_secret`` of ``PostgresStore.put_secret.<locals>.job``."""
    parts = getattr(job, "__qualname__", "write").split(".")
    return parts[-3] if len(parts) >= 3 else parts[-1]


def sql(text: str) -> str:
    """SQLite-style ``?`` placeholders numbered for PostgreSQL (``$1``, ``$2``...), so
    both adapters read alike. (No statement here has a ``?`` inside a literal.)"""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", text)


def rowcount(status: str) -> int:
    """The row count of a command status such as ``DELETE 3`` or ``INSERT 0 1``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class Connector:
    """How to reach the database: the DSN (no password in it) and the password apart."""

    def __init__(self, dsn: str, *, password: str | None, connect_timeout: float, command_timeout: float) -> None:
        self.dsn = dsn
        self._password = password or None
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout

    def __repr__(self) -> str:
        return "Connector(<dsn>)"

    async def connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                self.dsn, password=self._password, timeout=self.connect_timeout, command_timeout=self.command_timeout
            )
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"cannot reach PostgreSQL: {_reason(exc)}") from exc

    async def pool(self, size: int) -> asyncpg.Pool:
        try:
            pool = await asyncpg.create_pool(
                self.dsn, password=self._password, timeout=self.connect_timeout, command_timeout=self.command_timeout,
                min_size=1, max_size=max(1, size),
            )
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"cannot reach PostgreSQL: {_reason(exc)}") from exc
        assert pool is not None
        return pool


def _reason(exc: BaseException) -> str:
    """A failure's own words when they come from PostgreSQL or the network (they name
    hosts, users, databases and constraints, never a password or a bound value)."""
    if isinstance(exc, asyncpg.PostgresError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


async def migrate(connector: Connector, on_migration: MigrationProgress | None = None) -> tuple[int, int]:
    """Apply every PostgreSQL migration not applied yet; returns (version before, after).

    Each migration runs in its own transaction and records itself in
    ``schema_migrations``; a session advisory lock makes nodes that start together take
    turns, so each migration runs once.

    Raises:
        StorageError: unreachable, a migration failed (nothing of it stays), or the
            database is newer than this roomsvc.
    """
    db = await connector.connect()
    try:
        await db.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            return await _migrate_locked(db, on_migration)
        finally:
            await db.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    except asyncpg.PostgresError as exc:
        raise StorageError(f"migration failed: {_reason(exc)}") from exc
    finally:
        await db.close()


async def _migrate_locked(db: asyncpg.Connection, on_migration: MigrationProgress | None) -> tuple[int, int]:
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version integer PRIMARY KEY, name text NOT NULL, applied_at double precision NOT NULL)"
    )
    current = int(await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
    latest = latest_version(POSTGRES_MIGRATIONS)
    if current > latest:
        raise StorageError(
            f"database schema version {current} is newer than this roomsvc knows ({latest}); "
            "run the roomsvc release that wrote it"
        )
    for number, name, text in migrations(POSTGRES_MIGRATIONS):
        if number <= current:
            continue
        log.info("applying migration %s", name)
        if on_migration is not None:
            on_migration(number, name, latest)
        try:
            async with db.transaction():
                await db.execute(text)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", number, name, time.time()
                )
        except asyncpg.PostgresError as exc:
            raise StorageError(f"migration {name} failed: {_reason(exc)}") from exc
    return current, latest


class PostgresStore:
    """The PostgreSQL store. Open it with :meth:`open`; close it with :meth:`close`."""

    def __init__(
        self, connector: Connector, writer: asyncpg.Connection, readers: asyncpg.Pool, *, batch_max: int,
        observer: Observer = NOOP,
    ) -> None:
        self.connector = connector
        #: write batches, their commit time and failures; a span per write (operations)
        self.observer = observer
        self._writer: asyncpg.Connection | None = writer
        self._readers = readers
        self._batch_max = batch_max
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: number of committed write batches (a figure for tests and metrics)
        self.commits = 0

    # -- life cycle -----------------------------------------------------------------

    @classmethod
    async def open(
        cls, connector: Connector, *, pool_size: int = 5, batch_max: int = 256, on_migration: MigrationProgress | None = None,
        observer: Observer = NOOP,
    ) -> "PostgresStore":
        await migrate(connector, on_migration)
        writer = await connector.connect()
        try:
            readers = await connector.pool(pool_size)
        except BaseException:
            await writer.close()
            raise
        store = cls(connector, writer, readers, batch_max=batch_max, observer=observer)
        store._task = asyncio.get_running_loop().create_task(store._writer_loop(), name="postgres-writer")
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
        if self._writer is not None:
            await self._writer.close()
        await self._readers.close()

    async def ping(self) -> None:
        """One round trip to the database (readiness)."""
        await self._read("SELECT 1")

    @property
    def readers(self) -> asyncpg.Pool:
        """The reader pool (the cross-node refresh lock borrows connections from a pool of its own)."""
        return self._readers

    # -- the write path -------------------------------------------------------------------

    def queue_depth(self) -> int:
        """Writes waiting for the writer (a metrics gauge)."""
        return self._queue.qsize()

    async def _write(self, job: Job) -> Any:
        if self._closed:
            raise StorageError("the store is closed")
        # the span covers the wait for the group commit, in the caller's trace
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

    async def _connection(self) -> asyncpg.Connection:
        if self._writer is None or self._writer.is_closed():
            self._writer = None
            self._writer = await self.connector.connect()
        return self._writer

    async def _run_batch(self, batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        began = time.perf_counter()
        try:
            db = await self._connection()
            async with db.transaction():
                for job, future in batch:
                    outcomes.append((future, *await _run_job(db, job)))
            self.commits += 1
            self.observer.write_batch(len(batch), time.perf_counter() - began)
        except Exception as exc:  # noqa: BLE001 - the writer task must never die
            # the commit failed, the connection is gone, or PostgreSQL refused the
            # transaction: nothing of the batch is known to be stored, and every caller
            # hears so instead of waiting forever
            log.error("write batch of %d failed: %s", len(batch), _reason(exc))
            self.observer.storage_error("write")
            if isinstance(exc, _CONNECTION_LOST) and self._writer is not None:
                self._writer.terminate()
                self._writer = None
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
                wrapped = StorageError(f"storage error: {_reason(failure)}")
                wrapped.__cause__ = failure
                future.set_exception(wrapped)

    async def _read(self, text: str, *params: Any) -> list[asyncpg.Record]:
        try:
            return list(await self._readers.fetch(sql(text), *params))
        except (asyncpg.PostgresError, *_CONNECTION_LOST) as exc:
            self.observer.storage_error("read")
            raise StorageError(f"storage read failed: {_reason(exc)}") from exc

    # -- rooms ---------------------------------------------------------------------------

    async def get_room(self, name: RoomName) -> RoomRecord | None:
        rows = await self._read("SELECT name, created_at FROM rooms WHERE name = ?", name)
        return RoomRecord(RoomName(rows[0][0]), rows[0][1]) if rows else None

    async def create_room(self, name: RoomName, *, created_at: float) -> RoomRecord:
        async def job(db: asyncpg.Connection) -> RoomRecord:
            try:
                await db.execute(sql("INSERT INTO rooms (name, created_at) VALUES (?, ?)"), name, created_at)
            except asyncpg.UniqueViolationError as exc:
                raise AlreadyExists(f"room {name!r} already exists") from exc
            return RoomRecord(name, created_at)

        return await self._write(job)

    async def ensure_room(self, name: RoomName, *, created_at: float) -> RoomRecord:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute(sql("INSERT INTO rooms (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING"), name, created_at)

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
        rows = await self._read(
            f"SELECT {_prefixed('s.', _SECRET_COLS)}, v.kek_id, v.wrapped_dek, v.ciphertext "
            "FROM room_secrets s JOIN room_secret_versions v ON v.secret_pk = s.pk AND v.version = s.version "
            "WHERE s.room = ? AND s.owner = ? AND s.secret_id = ? AND s.delegated_to = ?",
            room, owner, id, delegated_to or "",
        )
        if not rows:
            return None
        r = rows[0]
        return _secret_record(r), EncryptedBlob(r[10], bytes(r[11]), bytes(r[12]))

    async def find_delegated(self, room: RoomName, id: SecretId, delegate: Identity) -> list[SecretRecord]:
        rows = await self._read(
            f"SELECT {_SECRET_COLS} FROM room_secrets WHERE room = ? AND secret_id = ? AND delegated_to = ? "
            "ORDER BY updated_at DESC",
            room, id, delegate,
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

        async def job(db: asyncpg.Connection) -> SecretRecord:
            # FOR UPDATE: another node's writer waits here until our batch commits, and
            # then sees the version we wrote (the compare-and-swap holds across nodes)
            row = await db.fetchrow(
                sql(
                    "SELECT pk, version, created_at FROM room_secrets "
                    "WHERE room = ? AND owner = ? AND secret_id = ? AND delegated_to = ? FOR UPDATE"
                ),
                *key,
            )
            current = row[1] if row else 0
            if current != previous_version:
                raise Conflict(f"secret {record.id!r} is at version {current}, not {previous_version}")
            if row is None:
                try:
                    pk = await db.fetchval(
                        sql(f"INSERT INTO room_secrets ({_SECRET_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk"),
                        *key, record.type, record.name, record.kind, record.version, record.created_at, record.updated_at,
                    )
                except asyncpg.UniqueViolationError as exc:  # created meanwhile on another node
                    raise Conflict(f"secret {record.id!r} was created meanwhile; retry") from exc
                created_at = record.created_at
            else:
                pk, created_at = row[0], row[2]
                await db.execute(
                    sql("UPDATE room_secrets SET type = ?, name = ?, kind = ?, version = ?, updated_at = ? WHERE pk = ?"),
                    record.type, record.name, record.kind, record.version, record.updated_at, pk,
                )
            await db.execute(
                sql(
                    "INSERT INTO room_secret_versions (secret_pk, version, kek_id, wrapped_dek, ciphertext, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                pk, record.version, blob.kek_id, blob.wrapped_dek, blob.ciphertext, record.updated_at,
            )
            await db.execute(
                sql("DELETE FROM room_secret_versions WHERE secret_pk = ? AND version <= ?"), pk, record.version - max_versions
            )
            await _insert_audit(db, [audit])
            return SecretRecord(**{**record.__dict__, "created_at": created_at})

        return await self._write(job)

    async def list_secrets(self, room: RoomName, owner: Identity) -> list[SecretRecord]:
        rows = await self._read(
            f"SELECT {_SECRET_COLS} FROM room_secrets WHERE room = ? AND owner = ? ORDER BY secret_id, delegated_to",
            room, owner,
        )
        return [_secret_record(r) for r in rows]

    async def delete_secret(
        self, room: RoomName, owner: Identity, id: SecretId, delegated_to: Identity | None, *, audit: AuditRecord
    ) -> bool:
        async def job(db: asyncpg.Connection) -> bool:
            status = await db.execute(
                sql("DELETE FROM room_secrets WHERE room = ? AND owner = ? AND secret_id = ? AND delegated_to = ?"),
                room, owner, id, delegated_to or "",
            )
            await _insert_audit(db, [audit])
            return rowcount(status) > 0

        return await self._write(job)

    async def list_versions(
        self, room: RoomName, owner: Identity, id: SecretId, delegated_to: Identity | None
    ) -> list[tuple[int, float]]:
        rows = await self._read(
            "SELECT v.version, v.created_at FROM room_secret_versions v JOIN room_secrets s ON s.pk = v.secret_pk "
            "WHERE s.room = ? AND s.owner = ? AND s.secret_id = ? AND s.delegated_to = ? ORDER BY v.version",
            room, owner, id, delegated_to or "",
        )
        return [(r[0], r[1]) for r in rows]

    # -- project secrets -------------------------------------------------------------------

    async def put_project_secret(
        self, record: ProjectSecretRecord, blob: EncryptedBlob, *, audit: AuditRecord
    ) -> ProjectSecretRecord:
        async def job(db: asyncpg.Connection) -> ProjectSecretRecord:
            row = await db.fetchrow(
                sql("SELECT version, kind, created_at FROM project_secrets WHERE id = ? FOR UPDATE"), record.id
            )
            if row is not None and row[1] != record.kind:
                raise Conflict(f"project secret {record.id!r} exists with another type ({row[1]})")
            if row is not None and row[0] != record.version - 1:
                raise Conflict(f"project secret {record.id!r} changed meanwhile; retry")
            created = row[2] if row else record.created_at
            if row is None:
                try:
                    await db.execute(
                        sql(
                            "INSERT INTO project_secrets (id, name, kind, version, created_at, updated_at, kek_id, "
                            "wrapped_dek, ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        ),
                        record.id, record.name, record.kind, record.version, created, record.updated_at,
                        blob.kek_id, blob.wrapped_dek, blob.ciphertext,
                    )
                except asyncpg.UniqueViolationError as exc:  # created meanwhile on another node
                    raise Conflict(f"project secret {record.id!r} changed meanwhile; retry") from exc
            else:
                await db.execute(
                    sql(
                        "UPDATE project_secrets SET name = ?, version = ?, updated_at = ?, kek_id = ?, wrapped_dek = ?, "
                        "ciphertext = ? WHERE id = ?"
                    ),
                    record.name, record.version, record.updated_at, blob.kek_id, blob.wrapped_dek, blob.ciphertext,
                    record.id,
                )
            await _insert_audit(db, [audit])
            return ProjectSecretRecord(**{**record.__dict__, "created_at": created})

        return await self._write(job)

    async def get_project_secret(self, id: str) -> tuple[ProjectSecretRecord, EncryptedBlob] | None:
        rows = await self._read(
            "SELECT id, name, kind, version, created_at, updated_at, kek_id, wrapped_dek, ciphertext "
            "FROM project_secrets WHERE id = ?",
            id,
        )
        if not rows:
            return None
        r = rows[0]
        return ProjectSecretRecord(r[0], r[1], r[2], r[3], r[4], r[5]), EncryptedBlob(r[6], bytes(r[7]), bytes(r[8]))

    async def list_project_secrets(self, kind: str | None = None) -> list[ProjectSecretRecord]:
        text = "SELECT id, name, kind, version, created_at, updated_at FROM project_secrets"
        rows = await (self._read(text + " WHERE kind = ? ORDER BY id", kind) if kind else self._read(text + " ORDER BY id"))
        return [ProjectSecretRecord(*r) for r in rows]

    async def delete_project_secret(self, id: str, *, audit: AuditRecord) -> bool:
        async def job(db: asyncpg.Connection) -> bool:
            status = await db.execute(sql("DELETE FROM project_secrets WHERE id = ?"), id)
            await _insert_audit(db, [audit])
            return rowcount(status) > 0

        return await self._write(job)

    # -- audit ----------------------------------------------------------------------------

    async def append(self, records: Sequence[AuditRecord]) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await _insert_audit(db, records)

        await self._write(job)

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
            params.append(float(since))
        text = "SELECT time, room, actor, owner, secret_id, action, channel, outcome, detail FROM audit"
        if where:
            text += " WHERE " + " AND ".join(where)
        rows = await self._read(text + " ORDER BY pk DESC LIMIT ?", *params, int(limit))
        return [AuditRecord(*r) for r in reversed(rows)]

    async def count_audit(self, *, before: float) -> PruneReport:
        rows = await self._read(
            "SELECT action, count(*), min(time), max(time) FROM audit WHERE time < ? GROUP BY action", float(before)
        )
        return _prune_report(before, [(r[0], r[1], r[2], r[3]) for r in rows])

    async def prune_audit(self, *, before: float, batch: int, audit: AuditRecord | None) -> PruneReport:
        """One batch, one job of the group-commit writer (see the SQLite store)."""

        async def job(db: asyncpg.Connection) -> PruneReport:
            if audit is not None:
                await _insert_audit(db, [audit])
            rows = await db.fetch(
                sql(
                    "DELETE FROM audit WHERE pk IN (SELECT pk FROM audit WHERE time < ? ORDER BY time, pk LIMIT ?) "
                    "RETURNING action, time"
                ),
                float(before), int(batch),
            )
            return _prune_report(before, [(r[0], 1, r[1], r[1]) for r in rows])

        report: PruneReport = await self._write(job)
        return report

    # -- token revocations ------------------------------------------------------------------

    async def add_revocation(self, revocation: Revocation, *, audit: AuditRecord) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute(
                sql(
                    "INSERT INTO token_revocations (kind, value, room, revoked_before, actor, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                revocation.kind, revocation.value, revocation.room, float(revocation.revoked_before), revocation.actor,
                float(revocation.created_at),
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
        async def job(db: asyncpg.Connection) -> None:
            if key.active:
                await db.execute("UPDATE keys SET active = false")
            await db.execute(
                sql("INSERT INTO keys (id, wrapped, created_at, active) VALUES (?, ?, ?, ?)"),
                key.id, key.wrapped, float(key.created_at), bool(key.active),
            )

        await self._write(job)

    async def delete_key(self, key_id: str) -> None:
        async def job(db: asyncpg.Connection) -> None:
            if await db.fetchval(sql(_KEY_USES_SQL), *(key_id,) * len(ENVELOPE_TABLES)):
                raise Conflict(f"key {key_id!r} still protects stored secrets; rotate first")
            active = await db.fetchval(sql("SELECT active FROM keys WHERE id = ? FOR UPDATE"), key_id)
            if active:
                raise Conflict(f"key {key_id!r} is the active key; rotate to a new key before retiring it")
            try:
                await db.execute(sql("DELETE FROM keys WHERE id = ?"), key_id)
            except asyncpg.ForeignKeyViolationError as exc:  # a value stored under it meanwhile, on another node
                raise Conflict(f"key {key_id!r} still protects stored secrets; rotate first") from exc

        await self._write(job)

    async def count_key_uses(self, key_id: str) -> int:
        rows = await self._read(_KEY_USES_SQL, *(key_id,) * len(ENVELOPE_TABLES))
        return int(rows[0][0])

    async def blobs_using(self, key_id: str, *, batch: int) -> AsyncIterator[list[RewrapItem]]:
        for table in ENVELOPE_TABLES:
            last = 0
            while True:
                rows = await self._read(
                    f"SELECT pk, kek_id, wrapped_dek, ciphertext FROM {table} "
                    "WHERE kek_id = ? AND pk > ? ORDER BY pk LIMIT ?",
                    key_id, last, int(batch),
                )
                if not rows:
                    break
                last = rows[-1][0]
                yield [RewrapItem(table, r[0], EncryptedBlob(r[1], bytes(r[2]), bytes(r[3]))) for r in rows]

    async def replace_blobs(self, items: Sequence[tuple[RewrapItem, EncryptedBlob]]) -> int:
        async def job(db: asyncpg.Connection) -> int:
            changed = 0
            for item, blob in items:
                if item.table not in ENVELOPE_TABLES:
                    raise ValueError(item.table)
                status = await db.execute(
                    sql(f"UPDATE {item.table} SET kek_id = ?, wrapped_dek = ? WHERE pk = ? AND kek_id = ? AND wrapped_dek = ?"),
                    blob.kek_id, blob.wrapped_dek, item.row_id, item.blob.kek_id, item.blob.wrapped_dek,
                )
                changed += rowcount(status)
            return changed

        return await self._write(job)

    # -- backup -----------------------------------------------------------------------------

    async def backup(self, name: str, *, directory: Path) -> str:
        """Not for this engine: PostgreSQL is backed up with its own tools.

        Raises:
            InvalidRequest: always, saying what to use instead.
        """
        raise InvalidRequest(
            "roomsvc backup copies an SQLite vault; back up a PostgreSQL vault with pg_dump "
            "(or `roomsvc export`), and keep the master key apart from it"
        )

    # -- export / import (roomsvc export, roomsvc import) ------------------------------------

    async def count_rows(self, table: str) -> int:
        rows = await self._read(f"SELECT count(*) FROM {table}")
        return int(rows[0][0])

    async def dump(self, table: str, columns: Sequence[str], *, order_by: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Every row of ``table`` (the named columns), ``batch`` rows at a time, in ``order_by`` order."""
        offset = 0
        while True:
            rows = await self._read(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order_by} LIMIT ? OFFSET ?", int(batch), offset
            )
            if not rows:
                return
            offset += len(rows)
            yield [tuple(r) for r in rows]

    async def table_names(self) -> set[str]:
        rows = await self._read(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE'"
        )
        return {r[0] for r in rows} - {"schema_migrations"}

    async def import_rows(
        self,
        batches: Iterable[tuple[str, Sequence[str], Sequence[Sequence[Any]]]],
        *,
        identities: Sequence[tuple[str, str]],
        on_rows: Callable[[str, int], None] | None = None,
    ) -> None:
        """Load (table, columns, rows) batches as they are, ids included, in ONE
        transaction: an import that fails leaves the database as it was. The database must
        hold no key and no secret yet. Afterwards each (table, column) identity continues
        past the highest id loaded.

        Raises:
            AlreadyExists: the database already holds a vault.
        """

        async def job(db: asyncpg.Connection) -> None:
            held = await db.fetchval("SELECT (SELECT count(*) FROM keys) + (SELECT count(*) FROM room_secrets)")
            if held:
                raise AlreadyExists("the PostgreSQL database already holds a vault; import only into an empty one")
            for table, columns, rows in batches:
                marks = ", ".join("?" * len(columns))
                await db.executemany(
                    sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"), [tuple(r) for r in rows]
                )
                if on_rows is not None:
                    on_rows(table, len(rows))
            for table, column in identities:
                await db.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                    f"coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
                )

        await self._write(job)


async def _run_job(db: asyncpg.Connection, job: Job) -> tuple[Any, BaseException | None]:
    """One job in its own savepoint: (result, None), or (None, failure) with only the job undone.
    A deadlock or serialization victim is re-run; a lost connection propagates (the batch fails)."""
    for attempt in range(_JOB_RETRIES + 1):
        try:
            async with db.transaction():
                return await job(db), None
        except _CONNECTION_LOST:
            raise
        except _RETRYABLE as exc:
            if attempt == _JOB_RETRIES:
                return None, exc
            await asyncio.sleep(0.01 * (attempt + 1))
        except Exception as exc:  # the job's own failure: its savepoint was rolled back
            return None, exc
    raise AssertionError("unreachable")


async def _insert_audit(db: asyncpg.Connection, records: Sequence[AuditRecord]) -> None:
    await db.executemany(
        sql(
            "INSERT INTO audit (time, room, actor, owner, secret_id, action, channel, outcome, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ),
        [(float(r.time), r.room, r.actor, r.owner, r.secret_id, r.action, r.channel, r.outcome, r.detail) for r in records],
    )


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


def _secret_record(r: asyncpg.Record) -> SecretRecord:
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
