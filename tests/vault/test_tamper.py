"""Ciphertexts are bound to their place: a row moved to another owner, id or room, or a
flipped byte, fails to decrypt with one generic error, and the failure is audited.

The database is edited through a second SQLite connection while the server runs (WAL
allows it), as an attacker with write access to the file could."""

from __future__ import annotations

import pytest

from tests.support.native_client import ResponseError
from tests.support.server import Server
from tests.vault.conftest import Http, audit_lines, native, now, sqlite_rw

ROOM = "room1"
GENERIC = {"code": 1008, "name": "decryption_failed", "message": "the stored secret cannot be decrypted"}


def current_version_pk(db, owner: str, secret_id: str, room: str = ROOM) -> int:  # noqa: ANN001
    row = db.execute(
        "SELECT v.pk FROM room_secrets s JOIN room_secret_versions v ON v.secret_pk = s.pk AND v.version = s.version "
        "WHERE s.room = ? AND s.owner = ? AND s.secret_id = ?",
        (room, owner, secret_id),
    ).fetchone()
    assert row is not None
    return row[0]


async def failed_reads(server: Server, identity: str, since: float, *secret_ids: str) -> list[dict]:
    return [line for line in await audit_lines(server, identity=identity, since=since)
            if line["outcome"] == "decrypt_failed" and line["secret_id"] in secret_ids]


async def test_row_moved_to_another_owner_does_not_decrypt(server: Server) -> None:
    started = now() - 1
    async with Http(server, server.token("alice", ROOM, api=("secrets",))) as alice, \
            Http(server, server.token("mallory", ROOM, api=("secrets",))) as mallory:
        await alice.set(ROOM, "moved-owner", "alice's value")
        db = sqlite_rw(server.data_dir / "roomsvc.db")
        db.execute("UPDATE room_secrets SET owner = 'mallory' WHERE owner = 'alice' AND secret_id = 'moved-owner'")
        db.close()
        reply = await mallory.get(ROOM, "moved-owner")
        assert reply.status == 500 and reply.body["error"] == GENERIC
        assert "alice's value" not in reply.text
        assert (await alice.get(ROOM, "moved-owner")).error == "not_found"
        async with native(server, server.token("mallory", ROOM, api=("secrets",)), ROOM) as ws:
            with pytest.raises(ResponseError) as info:
                await ws.request("secrets.get", {"id": "moved-owner"})
            assert (info.value.code, info.value.name, info.value.message) == tuple(GENERIC.values())
            assert (await ws.request("ping"))["pong"] is True
    lines = await failed_reads(server, "mallory", started, "moved-owner")
    assert len(lines) == 2 and {line["channel"] for line in lines} == {"http", "ws"}
    assert all(line["secret_id"] == "moved-owner" and line["owner"] == "mallory" for line in lines)


@pytest.mark.parametrize("column", ["room", "secret_id", "delegated_to", "kind"])
async def test_row_moved_to_another_place_does_not_decrypt(server: Server, column: str) -> None:
    alice_token = server.token("alice", ROOM, api=("secrets",))
    secret_id = f"moved-{column.replace('_', '-')}"
    new = {"room": "room9", "secret_id": secret_id + "-x", "delegated_to": "bob", "kind": "plain2"}[column]
    async with Http(server, alice_token) as alice:
        await alice.set(ROOM, secret_id, "the value")
        db = sqlite_rw(server.data_dir / "roomsvc.db")
        db.execute(f"UPDATE room_secrets SET {column} = ? WHERE owner = 'alice' AND secret_id = ?", (new, secret_id))
        db.close()
        room = new if column == "room" else ROOM
        lookup = new if column == "secret_id" else secret_id
        params = {"delegated_to": "bob"} if column == "delegated_to" else {}
        async with Http(server, server.token("alice", room, api=("secrets",))) as reader:
            reply = await reader.get(room, lookup, **params)
        assert reply.status == 500 and reply.body["error"] == GENERIC


async def test_ciphertext_copied_between_secrets_does_not_decrypt(server: Server) -> None:
    started = now() - 1
    async with Http(server, server.token("alice", ROOM, api=("secrets",))) as alice:
        await alice.set(ROOM, "copy-src", "source value")
        await alice.set(ROOM, "copy-dst", "target value")
        db = sqlite_rw(server.data_dir / "roomsvc.db")
        src, dst = current_version_pk(db, "alice", "copy-src"), current_version_pk(db, "alice", "copy-dst")
        db.execute(
            "UPDATE room_secret_versions SET (kek_id, wrapped_dek, ciphertext) = "
            "(SELECT kek_id, wrapped_dek, ciphertext FROM room_secret_versions WHERE pk = ?) WHERE pk = ?",
            (src, dst),
        )
        db.close()
        reply = await alice.get(ROOM, "copy-dst")
        assert reply.status == 500 and reply.body["error"] == GENERIC
        assert await alice.value(ROOM, "copy-src") == b"source value"
    lines = await failed_reads(server, "alice", started, "copy-src", "copy-dst")
    assert [(line["secret_id"], line["action"], line["channel"]) for line in lines] == [("copy-dst", "read", "http")]


@pytest.mark.parametrize("column, offset", [
    ("ciphertext", 0), ("ciphertext", 12), ("ciphertext", -1), ("wrapped_dek", 5), ("wrapped_dek", -3),
])
async def test_flipped_byte_does_not_decrypt(server: Server, column: str, offset: int) -> None:
    secret_id = f"flip-{column.replace('_', '-')}-{offset + 100}"
    started = now() - 1
    async with Http(server, server.token("alice", ROOM, api=("secrets",))) as alice:
        await alice.set(ROOM, secret_id, "flip me")
        db = sqlite_rw(server.data_dir / "roomsvc.db")
        pk = current_version_pk(db, "alice", secret_id)
        (data,) = db.execute(f"SELECT {column} FROM room_secret_versions WHERE pk = ?", (pk,)).fetchone()
        data = bytearray(data)
        data[offset] ^= 0x40
        db.execute(f"UPDATE room_secret_versions SET {column} = ? WHERE pk = ?", (bytes(data), pk))
        db.close()
        reply = await alice.get(ROOM, secret_id)
        assert reply.status == 500 and reply.body["error"] == GENERIC
        # exists only checks the row and does not decrypt: it still says so
        assert (await alice.exists(ROOM, secret_id)).body == {"exists": True}
    lines = await failed_reads(server, "alice", started, secret_id)
    assert [(line["action"], line["channel"]) for line in lines] == [("read", "http")]
