"""A unique canary value goes through every API (websocket, HTTP, each CLI command) and
every error path; it must then be nowhere it should not be: server logs, error and list
responses, CLI output (other than `get` itself), the audit log, and the raw bytes of the
database, its -wal and -shm files and a backup (neither as text nor in base64)."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.native_client import ResponseError
from tests.support.server import Server
from tests.vault.conftest import Http, b64_variants, native, query

ROOM = "room1"
CANARY = f"CANARY{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"
CANARY_B = CANARY.encode()
#: what one test leaves for the last one (the backup's path)
STATE: dict[str, Any] = {}


def value(tag: str) -> str:
    return f"{tag}:{CANARY}:end"


def assert_clean(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    assert CANARY_B not in data, f"canary in {where}"
    for variant in b64_variants(CANARY_B):
        assert variant not in data, f"base64 of the canary in {where}"


@pytest.fixture(scope="module")
def canary_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # debug logging: anything the server could log, it does
    srv = Server(tmp_path_factory.mktemp("canary") / "data", env={"ROOMSVC_SERVER_LOG_LEVEL": "debug"}).start()
    yield srv
    srv.stop()


async def test_canary_over_the_websocket(canary_server: Server) -> None:
    srv = canary_server
    seen: list[Any] = []
    async with native(srv, srv.token("alice", ROOM, api=("secrets",)), ROOM) as ws:

        async def call(kind: str, data: dict[str, Any], *, error: str | None = None) -> dict[str, Any]:
            try:
                out = await ws.request(kind, data)
            except ResponseError as exc:
                assert exc.name == error, (kind, exc)
                seen.append([exc.code, exc.name, exc.message])
                return {}
            assert error is None, (kind, "expected", error)
            if kind != "secrets.get":
                seen.append(out)
            return out

        await call("secrets.set", {"id": "c-ws", "text": value("ws1"), "type": "text/plain", "name": "canary ws"})
        await call("secrets.set", {"id": "c-ws", "value": base64.b64encode(value("ws2").encode()).decode()})
        got = await call("secrets.get", {"id": "c-ws"})
        assert base64.b64decode(got["value"]).decode() == value("ws2")
        await call("secrets.exists", {"id": "c-ws"})
        await call("secrets.list", {})
        await call("secrets.versions", {"id": "c-ws"})
        await call("secrets.set", {"id": "c-ws-kept", "text": value("kept-ws"), "delegated_to": "bob"})
        # error paths, each carrying the canary in the request
        await call("secrets.set", {"id": "c-ws", "text": value("cas"), "expected_version": 0}, error="conflict")
        await call("secrets.set", {"id": "c-ws", "text": value("big") + "x" * 70_000}, error="too_large")
        await call("secrets.set", {"id": "c-ws", "text": value("deny"), "for_identity": "carol"}, error="permission_denied")
        await call("secrets.set", {"id": "c-ws", "text": value("two"), "value": "QQ=="}, error="invalid_request")
        await call("secrets.set", {"id": "c-ws", "value": value("b64")}, error="invalid_request")
        await call("secrets.set", {"id": "c-ws", "text": value("type"), "type": "\x00" + CANARY}, error="invalid_request")
        await call("secrets.get", {"id": "c-missing"}, error="not_found")
        await call("secrets.delete", {"id": "c-ws"})
        await call("secrets.get", {"id": "c-ws"}, error="not_found")
    for item in seen:
        assert_clean(json.dumps(item), f"ws response {item}")


async def test_canary_over_http(canary_server: Server) -> None:
    srv = canary_server
    async with Http(srv, srv.token("alice", ROOM, api=("secrets",))) as http:
        await http.set(ROOM, "c-http", value("http1"), type="text/plain")
        await http.set(ROOM, "c-http", value("http2").encode())
        got = await http.get(ROOM, "c-http")
        assert base64.b64decode(got.body["value_base64"]).decode() == value("http2")
        await http.exists(ROOM, "c-http")
        await http.list(ROOM)
        await http.versions(ROOM, "c-http")
        await http.set(ROOM, "c-http-kept", value("kept-http"))
        errors = [
            await http.set(ROOM, "c-http", value("cas"), expected_version=0),
            await http.set(ROOM, "c-http", (value("big") + "x" * 70_000).encode()),
            await http.set(ROOM, "c-http", value("deny"), for_identity="carol"),
            await http.call("PUT", Http.path(ROOM, "c-http"), json={"text": value("two"), "value_base64": "QQ=="}),
            await http.call("PUT", Http.path(ROOM, "c-http"), json={"value_base64": value("b64")}),
            await http.call("PUT", Http.path(ROOM, "c-http"), json={"text": value("name"), "name": "\x07" + CANARY}),
            await http.get(ROOM, "c-missing"),
        ]
        assert [r.error for r in errors] == ["conflict", "too_large", "permission_denied", "invalid_request",
                                             "invalid_request", "invalid_request", "not_found"]
        await http.delete(ROOM, "c-http")
    for reply in http.replies:
        if reply is not got:
            assert_clean(reply.text, f"HTTP reply {reply.status} {reply.text[:200]}")
    # a value pasted into a query string by mistake never reaches the access log either
    async with Http(srv, srv.token("alice", ROOM, api=("secrets",))) as http:
        await http.call("GET", f"/v1/rooms/{ROOM}/secrets?note={CANARY}")


async def test_canary_through_every_cli_command(canary_server: Server, tmp_path: Path) -> None:
    srv = canary_server
    alice = srv.token("alice", ROOM, api=("secrets",))
    op = srv.operator_token()

    def run(*args: str, token: str = alice, input: bytes | None = None, code: int = 0, output_may_hold: bool = False):
        result = srv.cli(*args, token=token, input=input)
        assert result.returncode == code, (args, result.stderr.decode())
        assert_clean(result.stderr, f"stderr of {args}")
        if not output_may_hold:
            assert_clean(result.stdout, f"stdout of {args}")
        return result

    secret = ("room", "secret")
    room = ("--room", ROOM)
    run(*secret, "set", *room, "--id", "c-cli", "--text", value("cli1"), "--type", "text/plain")
    run(*secret, "set", *room, "--id", "c-cli", "--in", "-", input=value("cli2").encode())
    infile = tmp_path / "in.bin"
    infile.write_text(value("cli3"))
    run(*secret, "set", *room, "--id", "c-cli", "--in", str(infile))
    run(*secret, "set", *room, "--id", "c-cli", "--base64", base64.b64encode(value("cli4").encode()).decode())
    got = run(*secret, "get", *room, "--id", "c-cli", output_may_hold=True)
    assert got.stdout.decode() == value("cli4")  # the one place the value belongs
    outfile = tmp_path / "out.bin"
    run(*secret, "get", *room, "--id", "c-cli", "--out", str(outfile))
    assert outfile.read_text() == value("cli4")
    assert run(*secret, "exists", *room, "--id", "c-cli").stdout == b"true\n"
    assert "c-cli" in [s["id"] for s in json.loads(run(*secret, "list", *room).stdout)]
    assert len(json.loads(run(*secret, "versions", *room, "--id", "c-cli").stdout)) == 4
    # error paths
    run(*secret, "set", *room, "--id", "c-cli", "--text", value("cas"), "--expected-version", "0", code=1)
    big = tmp_path / "big.bin"
    big.write_text(value("big") + "x" * 70_000)
    run(*secret, "set", *room, "--id", "c-cli", "--in", str(big), code=1)
    run(*secret, "set", *room, "--id", "c-cli", "--text", value("deny"), "--for-identity", "carol", code=1)
    run(*secret, "set", *room, "--id", "c-cli", "--text", value("two"), "--base64", "QQ==", code=2)  # usage errors
    run(*secret, "set", *room, "--id", "c-cli", "--base64", value("bad"), code=2)
    run(*secret, "set", *room, "--id", "c-cli", "--text", value("notoken"), token="", code=1)
    run(*secret, "get", *room, "--id", "c-missing", code=1)
    run(*secret, "delete", *room, "c-cli")
    run(*secret, "set", *room, "--id", "c-cli-kept", "--text", value("kept-cli"))

    # project secrets
    run("secret", "keys", "create", "--id", "c-keys", "--data", f"TOKEN={value('keys')} OTHER=1", token=op)
    run("secret", "keys", "create", "--id", "c-keys-kept", "--data", f"TOKEN={value('keys-kept')}", token=op)
    run("secret", "keys", "create", "--id", "c-bad", "--data", f"A=1 {value('keys-bad')}", token=op, code=2)
    run("secret", "keys", "list", token=op)
    run("secret", "keys", "delete", "c-keys", token=op)
    run("secret", "pull", "create", "--id", "c-pull", "--server", "r.example", "--username", "u", token=op,
        input=(value("pull") + "\n").encode())
    run("secret", "pull", "create", "--id", "c-pull-kept", "--server", "r.example", "--username", "u",
        "--password", value("pull-kept"), token=op)
    run("secret", "pull", "list", token=op)
    run("secret", "pull", "delete", "c-pull", token=op)
    run("secret", "pull", "create", "--id", "c-pull2", "--server", "r.example", "--username", "u",
        "--password", value("pull-denied"), token=alice, code=1)
    run("audit", token=op)
    run("audit", "--json", "--room", ROOM, token=op)
    backup = srv.data_dir / "backups" / "backup.db"
    run("backup", backup.name, token=op)
    run("backup", backup.name, token=op, code=1)  # exists already: refused, not overwritten
    STATE["backup"] = backup


def db_files(server: Server) -> list[Path]:
    return [p for p in server.data_dir.iterdir() if p.name.startswith("roomsvc.db")]


def test_no_canary_in_database_files_logs_or_backup(canary_server: Server) -> None:
    """Runs last in this module: the files hold everything the tests above stored."""
    srv = canary_server
    backup: Path = STATE["backup"]
    files = db_files(srv)
    assert {p.name for p in files} == {"roomsvc.db", "roomsvc.db-wal", "roomsvc.db-shm"}
    assert (srv.data_dir / "roomsvc.db-wal").stat().st_size > 0
    for path in [*files, backup]:
        assert_clean(path.read_bytes(), str(path))
    # the kept secrets are really in those files, encrypted: the backup and the live
    # database have their rows
    assert query(backup, "SELECT count(*) FROM room_secrets WHERE secret_id LIKE 'c-%-kept'") == [(3,)]
    # after a clean stop the WAL is checkpointed into the database: check it again
    srv.stop()
    for path in db_files(srv):
        assert_clean(path.read_bytes(), f"{path} after stop")
    log = srv.stderr()
    assert "DEBUG" in log and "PUT /v1/rooms/room1/secrets/c-http" in log  # the log was really captured
    assert_clean(log, "server log")
