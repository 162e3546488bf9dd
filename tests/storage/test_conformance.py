"""One storage conformance suite, run unchanged against SQLite and PostgreSQL (the
``backend`` fixture): group commit, fail-closed audit, per-job savepoints, version caps,
key retirement and rotation under writes, OAuth flows consumed once, revocations, audit
queries and pruning. Engine-specific checks stay with their engine (tests/vault/test_store.py
for SQLite's PRAGMAs and writer; tests/storage/test_postgres.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from roomsvc.app import flow_store, service_store, usage_store
from roomsvc.crypto.envelope import MasterKey, new_key
from roomsvc.domain.llm.ports import UsageRow
from roomsvc.domain.oauth.flows import Flow, FlowStatus
from roomsvc.domain.ports import AuditRecord, EncryptedBlob, Revocation
from roomsvc.domain.service_catalog import ServiceRecord
from roomsvc.errors import AlreadyExists, Conflict, NotFound, Sealed, StorageError
from roomsvc.ids import Identity, RoomName, SecretId
from tests.storage.conftest import Backend
from tests.vault.conftest import OPERATOR, Vault, principal

ALICE = principal("alice", "room1", "secrets")


async def test_concurrent_writes_share_commits(vault: Vault) -> None:
    """N writes in flight at once complete in far fewer commits than N: one commit per
    batch, not per request (a structural count, not a timing)."""
    n = 200
    before = vault.store.commits
    records = await asyncio.gather(*[
        vault.secrets.set(ALICE, "room1", secret_id=f"g{i}", value=b"v%d" % i, channel="test") for i in range(n)
    ])
    assert [r.version for r in records] == [1] * n
    used = vault.store.commits - before
    assert 1 <= used <= n // 10, f"{n} writes took {used} commits"
    lines = await vault.auditor.query(identity="alice", limit=10000)
    assert sum(1 for line in lines if line.action == "create" and line.outcome == "ok") == n


async def test_audit_failure_fails_the_write_and_stores_nothing(vault: Vault, backend: Backend) -> None:
    await vault.secrets.set(ALICE, "room1", secret_id="before", value=b"old", channel="test")
    await backend.break_audit()

    with pytest.raises(StorageError):
        await vault.secrets.set(ALICE, "room1", secret_id="new", value=b"v", channel="test")
    with pytest.raises(StorageError):
        await vault.secrets.set(ALICE, "room1", secret_id="before", value=b"changed", channel="test")
    with pytest.raises(StorageError):  # a read whose audit line cannot be written is refused too
        await vault.secrets.get(ALICE, "room1", secret_id="before", channel="test")
    with pytest.raises(StorageError):
        await vault.secrets.delete(ALICE, "room1", secret_id="before", channel="test")

    assert await vault.store.get_secret(RoomName("room1"), Identity("alice"), SecretId("new"), None) is None
    rows = await backend.query(
        "SELECT s.version, count(v.pk) FROM room_secrets s JOIN room_secret_versions v ON v.secret_pk = s.pk "
        "WHERE s.secret_id = 'before' GROUP BY s.version"
    )
    assert rows == [(1, 1)]  # neither the update nor the delete happened
    assert await backend.query("SELECT count(*) FROM room_secrets WHERE secret_id = 'new'") == [(0,)]
    assert await backend.query("SELECT count(*) FROM audit WHERE secret_id = 'new'") == [(0,)]

    # the writer survived: once the audit works again, so do writes
    await backend.heal_audit()
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


async def test_versions_are_capped_and_purged_on_delete(backend: Backend) -> None:
    vault = await backend.vault(max_versions=3)
    try:
        for i in range(5):
            await vault.secrets.set(ALICE, "room1", secret_id="s", value=b"%d" % i, channel="test")
        versions = await vault.secrets.versions(ALICE, "room1", secret_id="s", channel="test")
        assert [v for v, _ in versions] == [3, 4, 5]
        await vault.secrets.delete(ALICE, "room1", secret_id="s", channel="test")
        assert await backend.query("SELECT count(*) FROM room_secret_versions") == [(0,)]
        assert await backend.query("SELECT count(*) FROM room_secrets") == [(0,)]
    finally:
        await vault.close()


async def test_a_second_store_on_the_same_database_sees_writes_at_once_and_cas_holds(backend: Backend) -> None:
    """Two stores on one database (two nodes on PostgreSQL): a write on one is read on the
    other at once, and a compare-and-swap lost to the other store is a Conflict."""
    master = MasterKey(new_key())
    a = await backend.vault(master=master)
    b = await backend.vault(master=master)
    try:
        await a.secrets.set(ALICE, "room1", secret_id="shared", value=b"from a", channel="test")
        _, value = await b.secrets.get(ALICE, "room1", secret_id="shared", channel="test")
        assert value.reveal() == b"from a"
        results = await asyncio.gather(
            a.secrets.set(ALICE, "room1", secret_id="shared", value=b"a2", expected_version=1, channel="test"),
            b.secrets.set(ALICE, "room1", secret_id="shared", value=b"b2", expected_version=1, channel="test"),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "SecretRecord"], results
        created = await asyncio.gather(
            a.secrets.set(ALICE, "room1", secret_id="fresh", value=b"a", expected_version=0, channel="test"),
            b.secrets.set(ALICE, "room1", secret_id="fresh", value=b"b", expected_version=0, channel="test"),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in created) == ["Conflict", "SecretRecord"], created
    finally:
        await a.close()
        await b.close()


# -- keyring ------------------------------------------------------------------------------------


async def test_retiring_a_key_in_use_or_active_is_refused(backend: Backend) -> None:
    master = MasterKey(new_key())
    vault = await backend.vault(master=master)
    try:
        await vault.secrets.set(ALICE, "room1", secret_id="s", value=b"under k1", channel="test")
        await vault.project.put_keys(OPERATOR, id="bag", data={"A": "1"})
        (k1,) = await vault.store.list_keys()
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
        await vault.keyring.retire(active)
        assert [k.id for k in await vault.store.list_keys()] == [report.new_key_id]
        _, value = await vault.secrets.get(ALICE, "room1", secret_id="s", channel="test")
        assert value.reveal() == b"under k1"
        assert await vault.project.resolve_keys("bag", service="svc") == {"A": "1"}
    finally:
        await vault.close()

    again = await backend.vault(master=master)
    try:
        _, value = await again.secrets.get(ALICE, "room1", secret_id="s", channel="test")
        assert value.reveal() == b"under k1"
    finally:
        await again.close()
    with pytest.raises(Sealed):
        await backend.vault(master=MasterKey(new_key()))


async def test_rotation_catches_writes_encrypted_under_the_old_key_meanwhile(vault: Vault) -> None:
    for round_ in range(3):
        old = vault.cipher.active_key_id
        results = await asyncio.gather(
            vault.keyring.rotate(batch=7),
            *[vault.secrets.set(ALICE, "room1", secret_id=f"r{round_}-{i}", value=b"x", channel="test") for i in range(40)],
        )
        assert results[0].failed == 0
        assert await vault.store.count_key_uses(old) == 0, f"round {round_}: rows left under {old}"
        await vault.keyring.retire(old)
    for i in range(40):
        _, value = await vault.secrets.get(ALICE, "room1", secret_id=f"r2-{i}", channel="test")
        assert value.reveal() == b"x"


async def test_concurrent_rotations_run_one_at_a_time(vault: Vault) -> None:
    for i in range(30):
        await vault.secrets.set(ALICE, "room1", secret_id=f"c{i}", value=b"v", channel="test")
    reports = await asyncio.gather(vault.keyring.rotate(batch=4), vault.keyring.rotate(batch=4))
    final = vault.cipher.active_key_id
    assert final == reports[1].new_key_id
    statuses = {s.id: s.uses for s in await vault.keyring.status()}
    assert statuses[final] == 30 and sum(statuses.values()) == 30


# -- project secrets, rooms -------------------------------------------------------------------


async def test_project_secrets_keep_their_kind_and_version(vault: Vault) -> None:
    await vault.project.put_keys(OPERATOR, id="bag", data={"A": "1"})
    await vault.project.put_keys(OPERATOR, id="bag", data={"A": "2"})
    (record,) = await vault.store.list_project_secrets("keys")
    assert record.version == 2
    assert await vault.project.resolve_keys("bag", service="svc") == {"A": "2"}
    blob = EncryptedBlob(vault.cipher.active_key_id, b"w", b"c")
    stale = type(record)(id="bag", name="bag", kind="keys", version=2, created_at=1.0, updated_at=2.0)
    with pytest.raises(Conflict):  # version 2 again: someone wrote meanwhile
        await vault.store.put_project_secret(stale, blob, audit=_audit("put"))
    other = type(record)(id="bag", name="bag", kind="pull", version=3, created_at=1.0, updated_at=2.0)
    with pytest.raises(Conflict, match="another type"):
        await vault.store.put_project_secret(other, blob, audit=_audit("put"))


async def test_rooms_are_created_once(vault: Vault) -> None:
    await vault.store.create_room(RoomName("r1"), created_at=10.0)
    with pytest.raises(AlreadyExists):
        await vault.store.create_room(RoomName("r1"), created_at=11.0)
    assert (await vault.store.ensure_room(RoomName("r1"), created_at=12.0)).created_at == 10.0
    assert (await vault.store.ensure_room(RoomName("r2"), created_at=13.0)).created_at == 13.0
    assert [r.name for r in await vault.store.list_rooms()] == ["r1", "r2"]


# -- audit, revocations -----------------------------------------------------------------------


def _audit(action: str, *, t: float | None = None, room: str = "room1", actor: str = "alice") -> AuditRecord:
    return AuditRecord(time=t if t is not None else time.time(), room=room, actor=actor, owner=actor, secret_id="s",
                       action=action, channel="test", outcome="ok")


async def test_audit_query_filters_and_prune_deletes_only_older_lines(vault: Vault) -> None:
    await vault.store.append([_audit("old", t=100.0 + i) for i in range(7)])
    await vault.store.append([_audit("new", t=1000.0, room="room2", actor="bob")])
    assert [r.action for r in await vault.store.query(room="room2")] == ["new"]
    assert len(await vault.store.query(identity="alice", since=103.0)) == 4
    assert len(await vault.store.query(identity="alice", limit=3)) == 3
    counted = await vault.store.count_audit(before=500.0)
    assert counted.deleted == 7 and counted.oldest == 100.0 and counted.newest == 106.0
    first = await vault.store.prune_audit(before=500.0, batch=5, audit=None)
    second = await vault.store.prune_audit(before=500.0, batch=5, audit=_audit("prune", t=1001.0))
    assert (first.deleted, second.deleted) == (5, 2)
    assert [r.action for r in await vault.store.query()] == ["new", "prune"]


async def test_revocations_are_kept_in_order_with_their_audit_line(vault: Vault) -> None:
    one = Revocation("jti", "t-1", None, 0.0, "operator", 50.0)
    two = Revocation("identity", "bob", "room1", 60.5, "operator", 61.0)
    await vault.store.add_revocation(one, audit=_audit("revoke"))
    await vault.store.add_revocation(two, audit=_audit("revoke"))
    assert await vault.store.list_revocations() == [one, two]
    assert [r.action for r in await vault.store.query()] == ["revoke", "revoke"]


# -- OAuth flows --------------------------------------------------------------------------------


def _flow(flow_id: str, *, now: float, start: str = "", deadline: float = 600.0) -> Flow:
    return Flow(
        id=flow_id, room="room1", mode="link", status=FlowStatus.PENDING, requester="agent", requester_participant="p1",
        consenter="alice", consenter_participant="p2", owner="alice", delegate_to="agent", credential_id="oidc",
        client={"client_id": "c", "scopes": ["openid"]}, redirect_uri="http://127.0.0.1/cb", created_at=now,
        expires_at=now + deadline, start_hash=start or f"start-{flow_id}",
    )


async def test_an_oauth_flow_moves_once_when_requests_race(vault: Vault) -> None:
    flows = flow_store(vault.store)
    now = time.time()
    sealed = vault.cipher.encrypt(b"verifier", b"flow:f1")
    await flows.create_flow(_flow("f1", now=now), sealed, purge_before=now - 86400)
    with pytest.raises(AlreadyExists):
        await flows.create_flow(_flow("f1", now=now), sealed, purge_before=now - 86400)
    assert (await flows.get_flow(start_hash="start-f1")).id == "f1"  # type: ignore[union-attr]
    assert await flows.flow_secrets("f1") == sealed

    opened = await flows.move_flow("f1", FlowStatus.STARTED, now=now, opened=("state-1", "bind-1", now + 60))
    assert opened is not None and opened.state_hash == "state-1" and opened.start_hash == ""
    # ten callbacks with the state at once: exactly one moves the flow to exchanging
    moves = await asyncio.gather(*[
        flows.move_flow("f1", FlowStatus.EXCHANGING, now=now, state_hash="state-1", live=True) for _ in range(10)
    ])
    assert sum(m is not None for m in moves) == 1
    assert await flows.move_flow("f1", FlowStatus.EXCHANGING, now=now, state_hash="wrong") is None
    done = await flows.move_flow("f1", FlowStatus.COMPLETED, now=now)
    assert done is not None and done.status is FlowStatus.COMPLETED
    assert await flows.flow_secrets("f1") is None  # a terminal move erases the verifier


async def test_oauth_flow_purge_expires_then_deletes(vault: Vault) -> None:
    flows = flow_store(vault.store)
    now = 10_000.0
    blob = vault.cipher.encrypt(b"v", b"flow")
    await flows.create_flow(_flow("late", now=now, deadline=10), blob, purge_before=0)
    await flows.create_flow(_flow("live", now=now, deadline=1000), blob, purge_before=0)
    assert await flows.purge_flows(now=now + 20, before=now + 20, stuck_before=now) == (1, 1)
    assert await flows.get_flow(id="late") is None
    assert (await flows.get_flow(id="live")).status is FlowStatus.PENDING  # type: ignore[union-attr]


# -- service specs, LLM usage (migrations 0004, 0005) ------------------------------------------------


async def test_service_specs_are_stored_once_per_room_and_name(vault: Vault) -> None:
    services = service_store(vault.store)
    spec = {"image": "example/agent:1", "env": {"TOKEN": {"secret": "api-key"}}}
    record = ServiceRecord(room="room1", name="agent", spec=spec, created_by="operator", created_at=10.0, updated_at=10.0)
    await services.put_service(record, replace=False, audit=_audit("service_create"))
    with pytest.raises(AlreadyExists):
        await services.put_service(record, replace=False, audit=_audit("service_create"))
    changed = ServiceRecord(room="room1", name="agent", spec={"image": "example/agent:2"}, created_by="operator",
                            created_at=10.0, updated_at=20.0)
    await services.put_service(changed, replace=True, audit=_audit("service_update"))
    await services.put_service(ServiceRecord(room="room2", name="agent", spec=spec, created_by="op", created_at=1.0,
                                             updated_at=1.0), replace=False, audit=_audit("service_create"))
    got = await services.get_service("room1", "agent")
    assert got is not None and got.spec == {"image": "example/agent:2"} and got.updated_at == 20.0
    assert [(s.room, s.name) for s in await services.list_services(None)] == [("room1", "agent"), ("room2", "agent")]
    assert [s.room for s in await services.list_services("room2")] == ["room2"]
    assert await services.delete_service("room1", "agent", audit=_audit("service_delete"))
    assert not await services.delete_service("room1", "agent", audit=_audit("service_delete"))
    actions = [r.action for r in await vault.store.query()]
    assert actions.count("service_delete") == 1 and actions.count("service_create") == 2


async def test_llm_usage_rows_sum_per_day_and_report_per_model(vault: Vault) -> None:
    usage = usage_store(vault.store)
    for i, (who, model, tokens) in enumerate([("alice", "m1", 10), ("alice", "m1", 5), ("alice", "m2", 7), ("bob", "m1", 3)]):
        row = UsageRow(time=100.0 + i, day="2026-11-29", room="room1", identity=who, provider="openai", model=model,
                       input_tokens=tokens, output_tokens=1, outcome="ok", stream=bool(i % 2))
        await usage.record_usage(row, _audit("llm_call", t=100.0 + i, actor=who))
    assert await usage.day_total("2026-11-29", identity="alice") == 25
    assert await usage.day_total("2026-11-29", room="room1") == 29
    assert await usage.day_total("2026-11-30", room="room1") == 0
    report = await usage.usage_report(room="room1", since=101.0)
    assert [(r.identity, r.model, r.requests, r.input_tokens, r.output_tokens) for r in report] == [
        ("alice", "m1", 1, 5, 1), ("alice", "m2", 1, 7, 1), ("bob", "m1", 1, 3, 1)]
    assert all(isinstance(r.input_tokens, int) for r in report)
