"""Hostile input end to end through a real server (issue 10, "Inputs"): HTTP bodies and
MeshAgent message_json parsed as strictly as native frames, bodies never read before the
token is checked, attribute limits on the merged result, names that reach log and audit
lines kept to the identity character set, server-provided text escaped by the CLI, and
backups written only inside the backup directory."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from roomsvc.transport.meshagent.packing import LENGTH_BYTES, EmptyContent, ErrorContent, JsonContent, unpack_content
from tests.meshagent.raw_client import RawClient
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import REPO, Server

ROOM = "room1"
DEEP = "[" * 10_000 + "]" * 10_000
ESC = "\x1b]0;owned\x07\x1b[2J\rforged"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A server of this module's own, so its log holds only these attacks."""
    srv = Server(tmp_path_factory.mktemp("inputs") / "data", env={
        "ROOMSVC_ROOMS_MAX_ATTRIBUTES": "4", "ROOMSVC_ROOMS_MAX_ATTRIBUTES_SIZE": "1024",
    }).start()
    yield srv
    srv.stop()


async def _call(server: Server, method: str, path: str, body: str | bytes, token: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, server.url + path, data=body, headers=headers) as response:
            text = await response.text()
            return response.status, json.loads(text)


# -- strict JSON bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    '{"name": "dup-a", "name": "dup-b"}',
    '{"name": "nan-room", "extra": NaN}',
    '{"name": "inf-room", "extra": -Infinity}',
    '{"name": "deep-room", "extra": ' + DEEP + "}",
], ids=["duplicate-key", "nan", "infinity", "10000-deep"])
async def test_http_bodies_are_parsed_as_strictly_as_frames(server: Server, body: str) -> None:
    status, reply = await _call(server, "POST", "/v1/admin/rooms", body, server.operator_token())
    assert status == 400 and reply["error"]["name"] == "invalid_request", reply
    status, rooms = await _call(server, "GET", "/v1/admin/rooms", b"", server.operator_token())
    assert not {"dup-a", "dup-b", "nan-room", "inf-room", "deep-room"} & {r["name"] for r in rooms["rooms"]}
    assert "Traceback" not in server.stderr()


async def test_a_secret_body_with_a_duplicate_value_is_refused(server: Server) -> None:
    token = server.token("dana", ROOM, api=("secrets",))
    status, reply = await _call(server, "PUT", f"/v1/rooms/{ROOM}/secrets/s1", '{"text": "shown", "text": "stored"}', token)
    assert status == 400 and reply["error"]["name"] == "invalid_request"
    status, reply = await _call(server, "PUT", f"/v1/rooms/{ROOM}/secrets/s1", '{"text": "ok"}', token)
    assert status == 200


async def test_a_large_body_without_a_valid_token_is_401_unread(server: Server) -> None:
    """Over max_body_size (262144 by default): a 413 would mean the server started
    reading it; the token is checked first, so a client without one gets 401, on every
    body-taking route."""
    big = b'{"text": "' + b"x" * 300_000 + b'"}'
    routes = [("PUT", f"/v1/rooms/{ROOM}/secrets/big"), ("POST", f"/v1/rooms/{ROOM}/headers"),
              ("POST", "/v1/admin/rooms"), ("PUT", "/v1/admin/secrets/keys/k"), ("POST", "/v1/admin/backup")]
    for method, path in routes:
        for token in (None, "not-a-token"):
            status, reply = await _call(server, method, path, big, token)
            assert (status, reply["error"]["name"]) == (401, "unauthenticated"), (method, path)
    # with a token the body is read, and bounded
    status, _ = await _call(server, "PUT", f"/v1/rooms/{ROOM}/secrets/big", big, server.token("dana", ROOM, api=("secrets",)))
    assert status == 413


# -- MeshAgent message_json and tool arguments ----------------------------------------------------------


@pytest.mark.parametrize("message_json", ['{"a": 1, "a": 2}', '{"a": NaN}', DEEP], ids=["duplicate-key", "nan", "10000-deep"])
async def test_meshagent_message_json_is_parsed_strictly(server: Server, message_json: str) -> None:
    sender = await RawClient.connect(server.url, ROOM, server.token("mesh-sender", ROOM))
    receiver = await NativeClient.connect(server.ws_url(ROOM), server.token("native-receiver", ROOM))
    try:
        reply = await sender.invoke("messaging", "send", JsonContent({
            "to_participant_id": receiver.participant_id, "type": "chat", "message_json": message_json}))
        assert isinstance(reply, ErrorContent) and reply.code == 1002, reply
        # nothing was delivered; a well-formed message still is
        reply = await sender.invoke("messaging", "send", JsonContent({
            "to_participant_id": receiver.participant_id, "type": "chat", "message_json": '{"n": 1}'}))
        assert reply == EmptyContent()
        assert (await receiver.next_event("message"))["data"]["body"] == {"n": 1}
    finally:
        await sender.close()
        await receiver.close()
    assert "Traceback" not in server.stderr()


async def test_meshagent_tool_arguments_are_parsed_strictly(server: Server) -> None:
    client = await RawClient.connect(server.url, ROOM, server.token("mesh-args", ROOM, api=("secrets",)))
    try:
        for arguments in ('{"type": "json", "json": {"secret_id": "a", "secret_id": "b"}}',
                          '{"type": "json", "json": {"secret_id": NaN}}', '{"type": "json", "json": ' + DEEP + "}"):
            header = ('{"toolkit": "secrets", "tool": "exists", "arguments": ' + arguments + "}").encode()
            await client.send_raw("room.invoke_tool", len(header).to_bytes(LENGTH_BYTES, "big") + header)
            reply = unpack_content((await client.push("__response__")).payload)
            assert isinstance(reply, ErrorContent) and reply.code == 1002, reply
    finally:
        await client.close()
    assert "Traceback" not in server.stderr()


# -- attributes ------------------------------------------------------------------------------------------


async def test_attributes_cannot_grow_past_the_caps_by_small_updates(server: Server) -> None:
    """rooms.max_attributes = 4 and max_attributes_size = 1024 here."""
    alice = await NativeClient.connect(server.ws_url(ROOM), server.token("attr-alice", ROOM))
    try:
        for i in range(4):
            await alice.request("participant.set_attributes", {"attributes": {f"k{i}": "v"}})
        with pytest.raises(ResponseError) as refused:
            await alice.request("participant.set_attributes", {"attributes": {"k4": "v"}})
        assert refused.value.name == "invalid_request"
        await alice.request("participant.set_attributes", {"attributes": {"k0": "a" * 400}})
        with pytest.raises(ResponseError) as refused:  # each update is small; together they pass 1024 bytes
            await alice.request("participant.set_attributes", {"attributes": {"k1": "b" * 400, "k2": "c" * 400}})
        assert refused.value.name == "invalid_request"
        listed = await alice.request("participants.list")
        mine = next(p for p in listed["participants"] if p["id"] == alice.participant_id)
        assert mine["attributes"] == {"k0": "a" * 400, "k1": "v", "k2": "v", "k3": "v"}  # the refused updates changed nothing
    finally:
        await alice.close()


# -- names in log and audit lines ------------------------------------------------------------------------


async def test_toolkit_names_and_message_types_use_the_identity_characters(server: Server) -> None:
    token = server.token("tk", ROOM, api=("secrets",))
    assert (await _call(server, "PUT", f"/v1/rooms/{ROOM}/secrets/gh", '{"text": "t0ken"}', token))[0] == 200
    for toolkit in ("evil\ntoolkit ok", "evil" + ESC, "x" * 200):
        body = json.dumps({"header_secrets": ["Authorization:Bearer {gh}"], "toolkit": toolkit})
        status, reply = await _call(server, "POST", f"/v1/rooms/{ROOM}/headers", body, token)
        assert status == 400 and reply["error"]["name"] == "invalid_request", toolkit
    body = json.dumps({"header_secrets": ["Authorization:Bearer {gh}"], "toolkit": "my-toolkit"})
    assert (await _call(server, "POST", f"/v1/rooms/{ROOM}/headers", body, token))[0] == 200

    native = await NativeClient.connect(server.ws_url(ROOM), token)
    mesh = await RawClient.connect(server.url, ROOM, server.token("tk-mesh", ROOM))
    try:
        for message_type in ("two words", "chat" + ESC):
            with pytest.raises(ResponseError) as refused:
                await native.request("message.broadcast", {"message_type": message_type, "body": {}})
            assert refused.value.name == "invalid_request"
            reply = await mesh.invoke("messaging", "broadcast", JsonContent({"type": message_type, "message_json": "{}"}))
            assert isinstance(reply, ErrorContent) and reply.code == 1002
    finally:
        await native.close()
        await mesh.close()


# -- the CLI escapes what the server sends ---------------------------------------------------------------


async def test_roomsvc_audit_escapes_control_characters(server: Server) -> None:
    """A non-operator's denied request is audited with the id it sent; printed raw, the
    escape would rewrite the operator's terminal."""
    hostile = "x" + ESC
    token = server.token("mallory", ROOM, api=("secrets",))
    status, _ = await _call(server, "PUT", "/v1/admin/secrets/keys/" + quote(hostile, safe=""), '{"data": {"A": "1"}}', token)
    assert status == 403
    result = await asyncio.to_thread(server.cli, "audit", "--identity", "mallory", token=server.operator_token())
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "mallory" in out and "\\x1b]0;owned" in out
    assert not any(c in out for c in "\x1b\x07\r")


async def test_room_listen_escapes_control_characters_in_messages(server: Server) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.update(ROOMSVC_URL=server.url, ROOMSVC_TOKEN=server.token("listener", ROOM), PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roomsvc", "room", "listen", "--room", ROOM, cwd=REPO, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    sender = None
    try:
        joined = await _line_with(proc, "joined room")
        participant_id = joined.split(" as participant ")[1].split()[0]
        sender = await NativeClient.connect(server.ws_url(ROOM), server.token("hostile", ROOM))
        await sender.request("message.send", {"to": participant_id, "message_type": "chat", "body": {"text": "hi" + ESC}})
        line = await _line_with(proc, "message from hostile")
        assert "hi\\x1b]0;owned\\x07\\x1b[2J\\x0dforged" in line
        assert not any(c in line for c in "\x1b\x07\r")
    finally:
        if sender is not None:
            await sender.close()
        proc.kill()
        await proc.wait()


async def _line_with(proc: asyncio.subprocess.Process, text: str) -> str:
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        assert line, f"output ended before {text!r}"
        if text in line:
            return line.rstrip("\n")


# -- backups -----------------------------------------------------------------------------------------


async def test_backup_writes_only_inside_the_backup_directory(server: Server, tmp_path: Path) -> None:
    op = server.operator_token()
    backups = server.data_dir / "backups"
    outside = tmp_path / "outside"
    outside.mkdir()

    def backup(name: str) -> tuple[int, str]:
        result = server.cli("backup", name, token=op)
        return result.returncode, (result.stdout + result.stderr).decode()

    code, out = await asyncio.to_thread(backup, "first.db")
    assert code == 0 and str(backups.resolve() / "first.db") in out, out
    assert (backups / "first.db").stat().st_size > 0
    first = (backups / "first.db").read_bytes()
    code, out = await asyncio.to_thread(backup, "first.db")
    assert code == 1 and "already exists" in out  # never overwritten
    assert (backups / "first.db").read_bytes() == first
    code, out = await asyncio.to_thread(backup, str(backups.resolve() / "second.db"))  # absolute, but inside
    assert code == 0 and (backups / "second.db").exists(), out

    (backups / "escape").symlink_to(outside, target_is_directory=True)
    (backups / "dangling.db").symlink_to(outside / "via-link.db")
    for name in ("../escape.db", "sub/../../escape.db", str(outside / "abs.db"), "escape/x.db", "dangling.db",
                 "", ".hidden.db", "new-folder/x.db"):
        code, out = await asyncio.to_thread(backup, name)
        assert code == 1, (name, out)  # the server refused it: exit 1, not a usage error (2)
    assert not list(outside.iterdir()) and not (server.data_dir / "escape.db").exists()
    # over the raw API too, where no CLI stands in between
    status, reply = await _call(server, "POST", "/v1/admin/backup", json.dumps({"name": str(outside / "api.db")}), op)
    assert status == 400 and reply["error"]["name"] == "invalid_request"
    status, reply = await _call(server, "POST", "/v1/admin/backup", json.dumps({"path": str(outside / "api.db")}), op)
    assert status == 400 and not list(outside.iterdir())
