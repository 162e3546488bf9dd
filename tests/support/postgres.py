"""A PostgreSQL database of its own for a test run: created on the server at
ROOMSVC_TEST_POSTGRES (default 127.0.0.1:5432, user postgres, trust auth) and dropped at
the end. ``available()`` is False when no server answers (tests then ``need()`` it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from functools import lru_cache
from typing import Any, Awaitable, Callable, Iterator, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

T = TypeVar("T")
ADMIN_DSN = os.environ.get("ROOMSVC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a loop of its own, in a thread: callable from sync
    fixtures and from inside a running event loop alike."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(("ok", asyncio.run(factory())))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out.append(("error", exc))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    kind, value = out[0]
    if kind == "error":
        raise value
    return value


@lru_cache(maxsize=1)
def available() -> bool:
    async def ping() -> bool:
        try:
            conn = await asyncpg.connect(ADMIN_DSN, timeout=3)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return run_sync(ping)


def dsn_of(name: str) -> str:
    parts = urlsplit(ADMIN_DSN)
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_database(prefix: str = "roomsvc_test") -> str:
    """A new empty database; returns its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"

    async def create() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_sync(create)
    return name


def drop_database(name: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run_sync(drop)


@contextlib.contextmanager
def database(prefix: str = "roomsvc_test") -> Iterator[str]:
    """A database for the block; yields its DSN (no password: trust auth)."""
    name = create_database(prefix)
    try:
        yield dsn_of(name)
    finally:
        drop_database(name)


def postgres_env(dsn: str) -> dict[str, str]:
    """Settings (as environment) for a server on that database."""
    return {"ROOMSVC_STORAGE_ENGINE": "postgres", "ROOMSVC_STORAGE_POSTGRES_DSN": dsn}


async def sql(dsn: str, text: str, *args: Any) -> list[asyncpg.Record]:
    """One statement on its own connection (a second client next to a server)."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return list(await conn.fetch(text, *args))
    finally:
        await conn.close()
