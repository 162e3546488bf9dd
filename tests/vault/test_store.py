"""What is SQLite's own in the store: its PRAGMAs and its writer connection. Everything
both engines must do (group commit, fail-closed audit, key retirement, rotation under
writes...) is in tests/storage/test_conformance.py, run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from roomsvc.errors import StorageError
from roomsvc.ids import Identity, RoomName, SecretId
from tests.vault.conftest import Vault, principal

ALICE = principal("alice", "room1", "secrets")


async def test_pragmas_are_set_for_durability(vault: Vault) -> None:
    pragmas = await vault.store.pragmas()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == 2  # FULL: a commit is fsynced before the reply
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] > 0


async def test_writer_survives_a_batch_that_fails_outside_any_job(vault: Vault) -> None:
    """A failure of the batch itself (not of one job) fails its callers and nothing else."""

    real = vault.store._writer

    class FailingCommit:
        """The writer connection, except that one COMMIT fails with a non-sqlite error
        (what aiosqlite raises when its connection is gone)."""

        armed = True

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(real, name)

        async def execute(self, sql: str, *args):  # noqa: ANN002, ANN201
            if sql == "COMMIT" and self.armed:
                self.armed = False
                raise ValueError("no active connection")
            return await real.execute(sql, *args)

    vault.store._writer = FailingCommit()  # type: ignore[assignment]
    try:
        with pytest.raises(StorageError):
            await asyncio.wait_for(vault.secrets.set(ALICE, "room1", secret_id="lost", value=b"x", channel="test"), 5)
    finally:
        vault.store._writer = real
    await asyncio.wait_for(vault.secrets.set(ALICE, "room1", secret_id="after", value=b"x", channel="test"), 5)
    assert await vault.store.get_secret(RoomName("room1"), Identity("alice"), SecretId("lost"), None) is None
