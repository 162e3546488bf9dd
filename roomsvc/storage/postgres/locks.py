"""A cross-node :class:`~roomsvc.domain.oauth.ports.KeyedLock` in PostgreSQL.

``hold(key)`` takes a transaction-scoped advisory lock (``pg_advisory_xact_lock``) on a
64-bit hash of the key, on a connection of its own, and keeps that transaction open for
the whole block: the OAuth refresher's re-read, refresh and compare-and-swap write all
happen while every other node waits on the same lock. The lock ends with the transaction
(commit at the end of the block, or PostgreSQL's rollback when the node dies), so a
crashed node never leaves it held.

Callers on one node first queue on an in-process lock per key, so 50 local waiters use
one database connection, not 50.
"""

from __future__ import annotations

import hashlib
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg

from roomsvc.domain.oauth.refresh import LocalLocks
from roomsvc.errors import StorageError

#: advisory lock keys are shared by everything using the database: ours are namespaced
_NAMESPACE = b"roomsvc-keyed-lock:"


def lock_id(key: str) -> int:
    """The signed 64-bit advisory lock id of ``key``."""
    return int.from_bytes(hashlib.sha256(_NAMESPACE + key.encode()).digest()[:8], "big", signed=True)


class PostgresLocks:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._local = LocalLocks()
        #: how many times a lock was granted by PostgreSQL (a figure for tests)
        self.granted = 0

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        async with self._local.hold(key):
            try:
                conn = await self._pool.acquire()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                raise StorageError("cannot take the refresh lock: PostgreSQL is unreachable") from exc
            try:
                async with conn.transaction():
                    try:
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_id(key))
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        raise StorageError("cannot take the refresh lock") from exc
                    self.granted += 1
                    yield
            finally:
                await self._pool.release(conn)
