"""The SQLite store and the keyring against a real database in a temp dir:
PRAGMAs, group commit, fail-closed audit, key retirement, rotation under writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from roomsvc.crypto.envelope import MasterKey, new_key
from roomsvc.errors import Conflict, NotFound, Sealed, StorageError
from roomsvc.ids import Identity, RoomName, SecretId
from tests.vault.conftest import OPERATOR, Vault, execute, open_vault, principal, query

ALICE = principal("alice", "room1", "secrets")


async def test_pragmas_are_set_for_durability(vault: Vault) -> None:
    pragmas = await vault.store.pragmas()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == 2  # FULL: a commit is fsynced before the reply
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] > 0


async def test_concurrent_writes_share_commits(vault: Vault) -> None:
    """N writes in flight at once complete in far fewer commits than N: one fsync per
    batch, not per request (a structural count, not a timing)."""
    n = 200
    before = vault.store.commits
    records = await asyncio.gather(*[
        vault.secrets.set(ALICE, "room1", secret_id=f"g{i}", value=b"v%d" % i, channel="test") for i in range(n)
    ])
    assert [r.version for r in records] == [1] * n
    used = vault.store.commits - before
    assert 1 <= used <= n // 10, f"{n} writes took {used} commits"
    # every write committed with its audit line
    lines = await vault.auditor.query(identity="alice", limit=10000)
    assert sum(1 for line in lines if line.action == "create" and line.outcome == "ok") == n


async def test_audit_failure_fails_the_write_and_stores_nothing(vault: Vault) -> None:
    await vault.secrets.set(ALICE, "room1", secret_id="before", value=b"old", channel="test")
    execute(vault.path, "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit is down'); END")

    with pytest.raises(StorageError):
        await vault.secrets.set(ALICE, "room1", secret_id="new", value=b"v", channel="test")
    with pytest.raises(StorageError):
        await vault.secrets.set(ALICE, "room1", secret_id="before", value=b"changed", channel="test")
    with pytest.raises(StorageError):  # a read whose audit line cannot be written is refused too
        await vault.secrets.get(ALICE, "room1", secret_id="before", channel="test")
    with pytest.raises(StorageError):
        await vault.secrets.delete(ALICE, "room1", secret_id="before", channel="test")

    assert await vault.store.get_secret(RoomName("room1"), Identity("alice"), SecretId("new"), None) is None
    rows = query(
        vault.path,
        "SELECT s.version, count(v.pk) FROM room_secrets s JOIN room_secret_versions v ON v.secret_pk = s.pk "
        "WHERE s.secret_id = 'before'",
    )
    assert rows == [(1, 1)]  # neither the update nor the delete happened
    assert query(vault.path, "SELECT count(*) FROM room_secrets WHERE secret_id = 'new'") == [(0,)]
    assert query(vault.path, "SELECT count(*) FROM audit WHERE secret_id = 'new'") == [(0,)]

    # the writer survived: once the audit works again, so do writes
    execute(vault.path, "DROP TRIGGER no_audit")
    await vault.secrets.set(ALICE, "room1", secret_id="new", value=b"v", channel="test")
    record, value = await vault.secrets.get(ALICE, "room1", secret_id="new", channel="test")
    assert value.reveal() == b"v" and record.version == 1


async def test_a_failing_job_does_not_undo_the_rest_of_its_batch(vault: Vault) -> None:
    """Jobs share a transaction but each runs in its own savepoint."""
    results = await asyncio.gather(
        vault.secrets.set(ALICE, "room1", secret_id="a", value=b"1", channel="test"),
        vault.secrets.set(ALICE, "room1", secret_id="cas", value=b"1", expected_version=5, channel="test"),
        vault.secrets.set(ALICE, "room1", secret_id="b", value=b"2", channel="test"),
        return_exceptions=True,
    )
    assert isinstance(results[1], Conflict)
    assert results[0].version == 1 and results[2].version == 1


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


async def test_versions_are_capped_and_purged_on_delete(tmp_path: Path) -> None:
    vault = await open_vault(tmp_path / "v.db", max_versions=3)
    try:
        for i in range(5):
            await vault.secrets.set(ALICE, "room1", secret_id="s", value=b"%d" % i, channel="test")
        versions = await vault.secrets.versions(ALICE, "room1", secret_id="s", channel="test")
        assert [v for v, _ in versions] == [3, 4, 5]
        await vault.secrets.delete(ALICE, "room1", secret_id="s", channel="test")
        assert query(vault.path, "SELECT count(*) FROM room_secret_versions") == [(0,)]
        assert query(vault.path, "SELECT count(*) FROM room_secrets") == [(0,)]
    finally:
        await vault.close()


# -- keyring ------------------------------------------------------------------------------------


async def test_retiring_a_key_in_use_or_active_is_refused(tmp_path: Path) -> None:
    master = MasterKey(new_key())
    vault = await open_vault(tmp_path / "k.db", master=master)
    try:
        await vault.secrets.set(ALICE, "room1", secret_id="s", value=b"under k1", channel="test")
        await vault.project.put_keys(OPERATOR, id="bag", data={"A": "1"})
        (k1,) = await vault.store.list_keys()
        # a second key, active, but nothing re-wrapped yet: k1 still protects two values
        await vault.keyring._add_new_key()
        with pytest.raises(Conflict, match="still protects 2"):
            await vault.keyring.retire(k1.id)
        with pytest.raises(Conflict):
            await vault.store.delete_key(k1.id)  # the store re-checks inside its transaction
        active = vault.cipher.active_key_id
        with pytest.raises(Conflict):
            await vault.keyring.retire(active)
        with pytest.raises(NotFound):
            await vault.keyring.retire("k-none")

        report = await vault.keyring.rotate()
        assert report.rewrapped == 2 and report.failed == 0
        await vault.keyring.retire(k1.id)
        await vault.keyring.retire(active)  # also old now, and unused after the rotation
        assert [k.id for k in await vault.store.list_keys()] == [report.new_key_id]
        _, value = await vault.secrets.get(ALICE, "room1", secret_id="s", channel="test")
        assert value.reveal() == b"under k1"
        assert await vault.project.resolve_keys("bag", service="svc") == {"A": "1"}
    finally:
        await vault.close()

    # a restart unseals with the same master key and reads everything; a wrong one is sealed
    again = await open_vault(tmp_path / "k.db", master=master)
    try:
        _, value = await again.secrets.get(ALICE, "room1", secret_id="s", channel="test")
        assert value.reveal() == b"under k1"
    finally:
        await again.close()
    with pytest.raises(Sealed):
        await open_vault(tmp_path / "k.db", master=MasterKey(new_key()))


async def test_rotation_catches_writes_encrypted_under_the_old_key_meanwhile(vault: Vault) -> None:
    """Writes racing the key switch encrypt under the old key; rotation must still leave
    nothing under it, or `keys retire` would be refused for ever after a 'complete' rotation."""
    for round_ in range(5):
        old = vault.cipher.active_key_id
        results = await asyncio.gather(
            vault.keyring.rotate(batch=7),
            *[vault.secrets.set(ALICE, "room1", secret_id=f"r{round_}-{i}", value=b"x", channel="test") for i in range(60)],
        )
        report = results[0]
        assert report.failed == 0
        assert await vault.store.count_key_uses(old) == 0, f"round {round_}: rows left under {old}"
        await vault.keyring.retire(old)
    for i in range(60):
        _, value = await vault.secrets.get(ALICE, "room1", secret_id=f"r4-{i}", channel="test")
        assert value.reveal() == b"x"


async def test_concurrent_rotations_run_one_at_a_time(vault: Vault) -> None:
    for i in range(30):
        await vault.secrets.set(ALICE, "room1", secret_id=f"c{i}", value=b"v", channel="test")
    reports = await asyncio.gather(vault.keyring.rotate(batch=4), vault.keyring.rotate(batch=4))
    final = vault.cipher.active_key_id
    assert final == reports[1].new_key_id
    statuses = {s.id: s.uses for s in await vault.keyring.status()}
    assert statuses[final] == 30 and sum(statuses.values()) == 30
