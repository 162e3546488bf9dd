"""`roomsvc backup PATH` under write load, restored the way docs/vault.md says: a new
data directory holding the backup as roomsvc.db plus the same master.key and
signing.key. Without the master key the restored copy stays sealed."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from tests.support.server import FAST, REPO, Server
from tests.support.waiting import until
from tests.vault.conftest import Http

ROOM = "room1"
N = 200


def serve_until_exit(data_dir: Path, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    full_env.update({**FAST, **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "roomsvc", "serve", "--port", "0", "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=full_env, cwd=REPO, timeout=30,
    )


async def test_backup_under_load_restores_and_is_sealed_without_its_master_key(tmp_path: Path) -> None:
    source = Server(tmp_path / "data").start()
    try:
        token = source.token("alice", ROOM, api=("secrets",))
        op = source.operator_token()
        async with Http(source, token) as http:
            replies = await asyncio.gather(*[http.set(ROOM, f"base{i}", f"base value {i}") for i in range(N)])
            assert all(r.status == 200 for r in replies)
        async with Http(source, op) as admin:
            reply = await admin.call("PUT", "/v1/admin/secrets/pull/reg", json={"server": "r", "username": "u", "password": "pw"})
            assert reply.status == 200

        acked: dict[str, bytes] = {}
        stop = asyncio.Event()

        async def writer(k: int) -> None:
            n = 0
            async with Http(source, token) as w:
                while not stop.is_set():
                    secret_id, value = f"load{k}-{n}", f"under load {k} {n}".encode()
                    if (await w.set(ROOM, secret_id, value)).status == 200:
                        acked[secret_id] = value
                    n += 1

        writers = [asyncio.create_task(writer(k)) for k in range(3)]
        await until(lambda: len(acked) > 20, "the writers are under way")
        before_backup = dict(acked)
        # a name: the server writes it into its backup directory (server.backup_dir)
        backup = source.data_dir / "backups" / "roomsvc-backup.db"
        result = await asyncio.to_thread(source.cli, "backup", backup.name, token=op)
        acked_by_end = len(acked)
        await until(lambda: len(acked) > acked_by_end, "the writers go on past the backup")
        stop.set()
        await asyncio.gather(*writers)
        assert result.returncode == 0, result.stderr.decode()
        assert str(backup.resolve()) in result.stdout.decode()
        assert len(before_backup) > 20 and len(acked) > len(before_backup)
    finally:
        source.stop()

    # the backup is one private, self-contained file holding no key
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert not Path(f"{backup}-wal").exists()
    data = backup.read_bytes()
    master_b64 = (source.data_dir / "master.key").read_text().strip()
    assert master_b64.encode() not in data and base64.b64decode(master_b64) not in data
    db = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    in_backup = {row[0] for row in db.execute("SELECT secret_id FROM room_secrets")}
    db.close()
    assert set(before_backup) <= in_backup and {f"base{i}" for i in range(N)} <= in_backup

    # without the master key: sealed, exit code 3, and the message names the setting
    sealed_dir = tmp_path / "sealed"
    sealed_dir.mkdir(mode=0o700)
    shutil.copy2(backup, sealed_dir / "roomsvc.db")
    shutil.copy2(source.data_dir / "signing.key", sealed_dir / "signing.key")
    refused = serve_until_exit(sealed_dir)
    assert refused.returncode == 3, refused.stderr
    assert "sealed" in refused.stderr and "keys.master_key_file" in refused.stderr
    assert not (sealed_dir / "master.key").exists()  # no new key was generated over the data
    # with another master key: sealed as well
    wrong = serve_until_exit(sealed_dir, env={"ROOMSVC_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()})
    assert wrong.returncode == 3 and "master key does not open" in wrong.stderr

    # the documented restore: backup as roomsvc.db plus the same two key files
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir(mode=0o700)
    shutil.copy2(backup, restored_dir / "roomsvc.db")
    for name in ("master.key", "signing.key"):
        shutil.copy2(source.data_dir / name, restored_dir / name)
    restored = Server(restored_dir).start()
    try:
        async with Http(restored, restored.token("alice", ROOM, api=("secrets",))) as http:
            listed = (await http.list(ROOM)).body["secrets"]
            assert {s["id"] for s in listed} == in_backup
            values = await asyncio.gather(*[http.value(ROOM, s["id"]) for s in listed])
            by_id = dict(zip([s["id"] for s in listed], values))
            for i in range(N):
                assert by_id[f"base{i}"] == f"base value {i}".encode()
            for secret_id, value in acked.items():
                if secret_id in in_backup:
                    assert by_id[secret_id] == value  # every secret in the copy decrypts
            for secret_id in before_backup:
                assert by_id[secret_id] == before_backup[secret_id]
            assert all(v is not None for v in values)
        async with Http(restored, restored.operator_token()) as admin:
            pulls = (await admin.call("GET", "/v1/admin/secrets", params={"type": "pull"})).body["secrets"]
            assert [p["id"] for p in pulls] == ["reg"]
            keys = (await admin.call("GET", "/v1/admin/keys")).body["keys"]
            assert sum(k["uses"] for k in keys) == len(in_backup) + 1
    finally:
        restored.stop()
