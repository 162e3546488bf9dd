"""Helpers for the vault tests: a thin HTTP client, a native websocket client per
identity, the audit log as seen by an operator, and a unit-level vault in a temp dir."""

from __future__ import annotations

import base64
import contextlib
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from roomsvc.clock import SystemClock
from roomsvc.crypto.envelope import EnvelopeCipher, MasterKey, new_key
from roomsvc.crypto.keyring import KeyringService
from roomsvc.domain.audit import Auditor
from roomsvc.domain.principal import Principal
from roomsvc.domain.project_secrets import ProjectSecretService
from roomsvc.domain.secret_writes import SecretWriter
from roomsvc.domain.secrets import SecretService
from roomsvc.ids import Identity, RoomName
from roomsvc.storage.sqlite.store import SqliteStore
from tests.support.native_client import NativeClient
from tests.support.server import Server


@dataclass
class Reply:
    status: int
    body: Any
    text: str

    @property
    def error(self) -> str | None:
        """The error name (``not_found``, ``permission_denied``...) or None on success."""
        if self.status < 400:
            return None
        return self.body["error"]["name"]


class Http:
    """HTTP calls with one token; every answer kept as status, JSON and raw text."""

    def __init__(self, server: Server, token: str | None) -> None:
        self.server = server
        self.token = token
        self.replies: list[Reply] = []

    async def __aenter__(self) -> "Http":
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.session = aiohttp.ClientSession(headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Reply:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        async with self.session.request(method, self.server.url + path, json=json, params=clean) as response:
            text = await response.text()
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
        reply = Reply(response.status, body, text)
        self.replies.append(reply)
        return reply

    # -- room secrets ---------------------------------------------------------------------

    @staticmethod
    def path(room: str, secret_id: str | None = None, suffix: str = "") -> str:
        base = f"/v1/rooms/{quote(room, safe='')}/secrets"
        return base if secret_id is None else f"{base}/{quote(secret_id, safe='')}{suffix}"

    async def set(self, room: str, secret_id: str, value: bytes | str, **fields: Any) -> Reply:
        body = {k: v for k, v in fields.items() if v is not None}
        if isinstance(value, str):
            body["text"] = value
        else:
            body["value_base64"] = base64.b64encode(value).decode()
        return await self.call("PUT", self.path(room, secret_id), json=body)

    async def get(self, room: str, secret_id: str, **params: Any) -> Reply:
        return await self.call("GET", self.path(room, secret_id), params=params)

    async def value(self, room: str, secret_id: str, **params: Any) -> bytes | None:
        """The stored value, or None when the answer is not_found (anything else fails)."""
        reply = await self.get(room, secret_id, **params)
        if reply.error == "not_found":
            return None
        assert reply.status == 200, reply.text
        return base64.b64decode(reply.body["value_base64"])

    async def exists(self, room: str, secret_id: str, **params: Any) -> Reply:
        return await self.call("GET", self.path(room, secret_id, "/exists"), params=params)

    async def list(self, room: str, **params: Any) -> Reply:
        return await self.call("GET", self.path(room), params=params)

    async def delete(self, room: str, secret_id: str, **params: Any) -> Reply:
        return await self.call("DELETE", self.path(room, secret_id), params=params)

    async def versions(self, room: str, secret_id: str, **params: Any) -> Reply:
        return await self.call("GET", self.path(room, secret_id, "/versions"), params=params)


@contextlib.asynccontextmanager
async def native(server: Server, token: str, room: str) -> AsyncIterator[NativeClient]:
    client = await NativeClient.connect(server.ws_url(room), token)
    try:
        yield client
    finally:
        await client.close()


async def audit_lines(server: Server, **params: Any) -> list[dict[str, Any]]:
    """The audit log through the operator API (``GET /v1/admin/audit``)."""
    async with Http(server, server.operator_token()) as op:
        reply = await op.call("GET", "/v1/admin/audit", params={"limit": 100000, **params})
    assert reply.status == 200, reply.text
    return reply.body["audit"]


def b64_variants(canary: bytes) -> list[bytes]:
    """base64 of ``canary`` at each of the three alignments it can take inside a longer
    value, trimmed to the characters that depend on the canary alone."""
    out = []
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + canary)
        start = ((pad + 2) // 3) * 4  # skip the groups the padding touches
        end = ((pad + len(canary)) // 3) * 4  # and the last group, shared with what follows
        out.append(encoded[start:end])
    return [v for v in out if len(v) >= 16]


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one read-only query on a database file (the connection is closed after)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql, params).fetchall()


def execute(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """One write through a second connection (WAL lets it run next to a server)."""
    with contextlib.closing(sqlite_rw(path)) as db:
        db.execute(sql, params)


def sqlite_rw(path: Path) -> sqlite3.Connection:
    """A second connection to a server's database (WAL lets it run next to the server)."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 10000")
    return db


# -- a vault in a temp dir, for unit tests ------------------------------------------------------


@dataclass
class Vault:
    store: Any  # SqliteStore or PostgresStore
    cipher: EnvelopeCipher
    keyring: KeyringService
    auditor: Auditor
    secrets: SecretService
    project: ProjectSecretService
    path: Path
    closed: bool = field(default=False)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.store.close()


async def open_vault(path: Path, *, master: MasterKey | None = None, max_versions: int = 10) -> Vault:
    return await vault_on(await SqliteStore.open(path), path, master=master, max_versions=max_versions)


async def vault_on(store: Any, path: Path, *, master: MasterKey | None = None, max_versions: int = 10) -> Vault:
    """The vault services over an open store of either engine (closed on failure)."""
    cipher = EnvelopeCipher()
    clock = SystemClock()
    keyring = KeyringService(store=store, cipher=cipher, master=master or MasterKey(new_key()), clock=clock)
    try:
        await keyring.unseal()
    except BaseException:
        await store.close()
        raise
    auditor = Auditor(store, clock)
    return Vault(
        store=store, cipher=cipher, keyring=keyring, auditor=auditor,
        secrets=SecretService(
            store=store, cipher=cipher, auditor=auditor, clock=clock,
            writer=SecretWriter(store=store, cipher=cipher, auditor=auditor, clock=clock, max_versions=max_versions),
        ),
        project=ProjectSecretService(store=store, cipher=cipher, auditor=auditor, clock=clock, max_value_size=65536),
        path=path,
    )


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[Vault]:
    v = await open_vault(tmp_path / "vault.db")
    yield v
    await v.close()


def principal(identity: str, room: str | None = "room1", *api: str) -> Principal:
    return Principal(identity=Identity(identity), room=RoomName(room) if room else None,
                     api=MappingProxyType({a: {} for a in api}))


OPERATOR = principal("operator", None, "admin")


def now() -> float:
    return time.time()
