"""Housekeeping against a real server: abandoned OAuth flows (with their sealed PKCE
verifier) are purged without waiting for a new flow, and the audit log is pruned only
past its retention, by the server's timer and by ``roomsvc audit prune``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from typing import Any

import aiohttp

from tests.support.native_client import NativeClient
from tests.support.server import REPO, Server
from tests.support.waiting import until

ROOM = "house"
INLINE = {"client_id": "c", "authorization_endpoint": "http://127.0.0.1:9/auth",
          "token_endpoint": "http://127.0.0.1:9/token", "scopes": ["read"]}


def _rows(server: Server, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """White box: read the server's database (read-only) as an operator with the file could."""
    db = sqlite3.connect(f"file:{server.data_dir / 'roomsvc.db'}?mode=ro", uri=True)
    try:
        return list(db.execute(sql, params))
    finally:
        db.close()


#: the flow purge's name among the server's housekeeping jobs
PURGE = "oauth flow purge"
#: a bounded poll for a state the server reaches on its own timer (a subprocess's)
_until = until


async def test_an_abandoned_pending_flow_and_its_sealed_verifier_are_purged_without_a_new_flow(make_server: Any) -> None:
    env = {"ROOMSVC_OAUTH_INLINE_ENDPOINTS": "http://127.0.0.1:9/*", "ROOMSVC_OAUTH_FLOW_PURGE_INTERVAL": "0.2",
           "ROOMSVC_OAUTH_FLOW_PURGE_GRACE": "0", "ROOMSVC_OAUTH_HTTP_TIMEOUT": "0.5",
           "ROOMSVC_OAUTH_HTTP_CONNECT_TIMEOUT": "0.2"}
    first = make_server(env)
    agent = await NativeClient.connect(first.ws_url(ROOM), first.token("agent", ROOM, api=("secrets",), role="agent"))
    person = await NativeClient.connect(first.ws_url(ROOM), first.token("person", ROOM, api=("secrets",)))
    asked = asyncio.ensure_future(agent.request("secrets.request_oauth_token", {
        "from_participant_id": person.participant_id, "oauth": INLINE, "timeout": 2}, timeout=30))
    await person.next_event("secrets.request_oauth_token")
    sealed = _rows(first, "SELECT status FROM oauth_flows WHERE ciphertext IS NOT NULL")
    assert sealed == [("pending",)]
    # the node dies with the request open: nobody will ever end this flow
    first.kill()
    asked.cancel()
    await asyncio.gather(asked, return_exceptions=True)
    await agent.close()
    await person.close()
    restarted = make_server(env, data_dir=first.data_dir)
    await _until(lambda: not _rows(restarted, "SELECT id FROM oauth_flows"), "the abandoned flow's row is deleted")


async def test_a_timed_out_flow_row_is_deleted_after_the_grace(make_fake_time_server: Any) -> None:
    grace = 600
    server = await make_fake_time_server({"ROOMSVC_OAUTH_INLINE_ENDPOINTS": "http://127.0.0.1:9/*",
                                          "ROOMSVC_OAUTH_FLOW_PURGE_INTERVAL": "0.05",
                                          "ROOMSVC_OAUTH_FLOW_PURGE_GRACE": str(grace)})
    agent = await NativeClient.connect(server.ws_url(ROOM), server.token("agent", ROOM, api=("secrets",), role="agent"))
    person = await NativeClient.connect(server.ws_url(ROOM), server.token("person", ROOM, api=("secrets",)))
    try:
        try:
            await agent.request("secrets.request_oauth_token", {
                "from_participant_id": person.participant_id, "oauth": INLINE, "timeout": 0.3}, timeout=30)
        except Exception as exc:  # noqa: BLE001 - the consent times out: that is the point
            assert getattr(exc, "code", None) == 1009, exc
        # the ended flow is kept through the grace (the purge runs every 50 ms meanwhile)...
        await _until(lambda: bool(_rows(server, "SELECT id FROM oauth_flows WHERE status != 'pending'")),
                     "the flow has ended")
        purges = server.periodic_runs.get(PURGE, 0)
        await _until(lambda: server.periodic_runs.get(PURGE, 0) > purges + 1, "two more purges ran")
        assert _rows(server, "SELECT id FROM oauth_flows"), "purged before the grace"
        # ...and deleted once the grace has passed
        server.clock.advance(grace + 1)
        await _until(lambda: not _rows(server, "SELECT id FROM oauth_flows"), "the expired flow's row is deleted")
    finally:
        await agent.close()
        await person.close()


# -- audit retention ---------------------------------------------------------------------------


def _audit(server: Server) -> list[tuple[float, str, str, str]]:
    return [tuple(r) for r in _rows(server, "SELECT time, actor, action, outcome FROM audit ORDER BY pk")]  # type: ignore[misc]


async def _secret_ops(server: Server, identity: str, count: int, *, parallel: int = 1) -> None:
    headers = {"Authorization": f"Bearer {server.token(identity, ROOM, api=('secrets',))}"}
    async with aiohttp.ClientSession() as http:
        async def put(i: int) -> None:
            async with http.put(f"{server.url}/v1/rooms/{ROOM}/secrets/s{i}", json={"text": "v"}, headers=headers) as r:
                assert r.status == 200, await r.text()

        for first in range(0, count, parallel):
            await asyncio.gather(*(put(i) for i in range(first, min(first + parallel, count))))


async def _write_until(server: Server, identity: str, done: asyncio.Event) -> list[float]:
    """Secret writes one after another until ``done``; the time each one was sent."""
    headers = {"Authorization": f"Bearer {server.token(identity, ROOM, api=('secrets',))}"}
    sent: list[float] = []
    async with aiohttp.ClientSession() as http:
        while not done.is_set():
            sent.append(time.time())
            async with http.put(f"{server.url}/v1/rooms/{ROOM}/secrets/d{len(sent)}", json={"text": "v"}, headers=headers) as r:
                assert r.status == 200, await r.text()
    return sent


def _cli(server: Server, *args: str) -> subprocess.CompletedProcess[bytes]:
    return server.cli("audit", "prune", *args, token=server.operator_token())


async def test_audit_prune_deletes_only_lines_past_the_retention_and_keeps_concurrent_writes(make_server: Any) -> None:
    retention = 1.0
    server = make_server({"ROOMSVC_SECRETS_AUDIT_RETENTION": str(retention), "ROOMSVC_SECRETS_AUDIT_PRUNE_INTERVAL": "0",
                          # one line per transaction: the prune interleaves with the writes below
                          "ROOMSVC_SECRETS_AUDIT_PRUNE_BATCH": "1", "ROOMSVC_LIMITS_SECRET_OPS_RATE": "0"})
    await _secret_ops(server, "old-writer", 300, parallel=30)
    old = [line for line in _audit(server) if line[1] == "old-writer"]
    assert len(old) == 300
    # let them age past the retention (the server's clock decides, so wait on the data)
    await _until(lambda: time.time() - max(t for t, *_ in old) > retention + 0.2, "the first lines are old enough")

    shorter = _cli(server, "--older-than", str(retention / 2))
    assert shorter.returncode != 0
    assert b"secrets.audit_retention" in shorter.stderr and b"never deleted" in shorter.stderr, shorter.stderr
    dry = _cli(server, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["deleted"] >= 300 and len(_audit(server)) >= 300

    done = asyncio.Event()
    writer = asyncio.ensure_future(_write_until(server, "during-prune", done))
    prune = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roomsvc", "audit", "prune", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"ROOMSVC_URL": server.url, "ROOMSVC_TOKEN": server.operator_token(), "PATH": "/usr/bin:/bin"}, cwd=REPO,
    )
    out, err = await asyncio.wait_for(prune.communicate(), 60)
    done.set()
    sent = await writer
    assert prune.returncode == 0, err
    report = json.loads(out)
    assert report["deleted"] >= 300 and report["by_action"]["create"] >= 300

    lines = _audit(server)
    assert not [line for line in lines if line[1] == "old-writer"]
    # nothing younger than the retention went: every write sent after the cut-off is there
    kept = [line for line in lines if line[1] == "during-prune"]
    assert len(kept) >= len([t for t in sent if t > report["cutoff"]]) > 0
    assert all(line[0] >= report["cutoff"] for line in lines)
    started, finished = (next(line[0] for line in lines if line[2] == "audit.prune" and line[3] == outcome)
                         for outcome in ("started", "ok"))
    # and writes went in while the prune was deleting, between its batches
    assert [line for line in kept if started < line[0] < finished]
    assert {(line[1], line[3]) for line in lines if line[2] == "audit.prune"} == {("operator", "started"), ("operator", "ok")}


async def test_audit_prune_is_refused_when_lines_are_kept_forever(make_server: Any) -> None:
    server = make_server()
    await _secret_ops(server, "writer", 3)
    refused = _cli(server, "--older-than", "0")
    assert refused.returncode != 0 and b"kept forever" in refused.stderr
    assert len(_audit(server)) == 3
    participant = server.cli("audit", "prune", token=server.token("writer", ROOM, api=("secrets", "admin")))
    assert participant.returncode != 0 and b"operator token" in participant.stderr


async def test_the_server_prunes_the_audit_log_on_its_own(make_fake_time_server: Any) -> None:
    retention = 3600
    server = await make_fake_time_server({"ROOMSVC_SECRETS_AUDIT_RETENTION": str(retention),
                                          "ROOMSVC_SECRETS_AUDIT_PRUNE_INTERVAL": "0.05"})
    await _secret_ops(server, "writer", 5)
    assert len([line for line in _audit(server) if line[1] == "writer"]) == 5  # young lines stay
    server.clock.advance(retention + 1)
    await _until(lambda: not [line for line in _audit(server) if line[1] == "writer"], "the old lines are pruned")
    # the prune's own "ok" line is written after the delete commits: wait for it too
    await _until(lambda: ("roomsvc:housekeeping", "audit.prune", "ok") in {(line[1], line[2], line[3]) for line in _audit(server)},
                 "the prune records its outcome")
