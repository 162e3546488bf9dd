"""Room secrets end to end on one real server: size cap, versions, purge on delete,
compare-and-swap, metadata-only lists, bad input, file modes."""

from __future__ import annotations

import base64
import json
import stat

import pytest

from tests.support.native_client import ResponseError
from tests.support.server import Server
from tests.vault.conftest import Http, audit_lines, native, now, query

ROOM = "room1"
CAP = 65536
METADATA = {"id", "type", "name", "owner", "delegated_to", "kind", "version", "created_at", "updated_at"}


@pytest.fixture(scope="module")
def alice(server: Server) -> str:
    return server.token("alice", ROOM, api=("secrets",))


# -- size cap -------------------------------------------------------------------------------------


async def test_ws_value_above_the_cap_is_a_typed_error_and_the_connection_survives(server: Server, alice: str) -> None:
    started = now() - 1
    async with native(server, alice, ROOM) as ws:
        for size in (CAP + 1, 90_000):  # just above, and far above (still within one message)
            with pytest.raises(ResponseError) as info:
                await ws.request("secrets.set", {"id": "big", "value": base64.b64encode(b"x" * size).decode()})
            assert (info.value.code, info.value.name) == (1002, "too_large")
            assert str(CAP) in info.value.message and "secrets.max_value_size" in info.value.message
        with pytest.raises(ResponseError) as info:
            await ws.request("secrets.set", {"id": "big", "text": "y" * (CAP + 1)})
        assert info.value.name == "too_large"
        assert (await ws.request("ping"))["pong"] is True
        stored = await ws.request("secrets.set", {"id": "big", "value": base64.b64encode(b"x" * CAP).decode()})
        assert stored["secret"]["version"] == 1
        got = await ws.request("secrets.get", {"id": "big"})
        assert base64.b64decode(got["value"]) == b"x" * CAP
    lines = await audit_lines(server, identity="alice", since=started)
    assert sum(1 for line in lines if line["secret_id"] == "big" and line["outcome"] == "refused") == 3


async def test_http_value_above_the_cap_is_413_too_large(server: Server, alice: str) -> None:
    async with Http(server, alice) as http:
        reply = await http.set(ROOM, "big-http", b"z" * (CAP + 1))
        assert reply.status == 413 and reply.body["error"]["name"] == "too_large"
        assert (await http.set(ROOM, "big-http", b"z" * CAP)).status == 200
        assert (await http.value(ROOM, "big-http")) == b"z" * CAP


# -- versions ---------------------------------------------------------------------------------------


async def test_versions_are_capped_at_ten_and_all_purged_on_delete(server: Server, alice: str) -> None:
    async with Http(server, alice) as http:
        for i in range(1, 13):
            reply = await http.set(ROOM, "rolling", f"value {i}")
            assert reply.body["secret"]["version"] == i
        versions = (await http.versions(ROOM, "rolling")).body["versions"]
        assert [v["version"] for v in versions] == list(range(3, 13))
        assert await http.value(ROOM, "rolling") == b"value 12"
        async with native(server, alice, ROOM) as ws:
            ws_versions = await ws.request("secrets.versions", {"id": "rolling"})
            assert ws_versions["versions"] == versions

        db = server.data_dir / "roomsvc.db"
        [(pk,)] = query(db, "SELECT pk FROM room_secrets WHERE room = ? AND owner = 'alice' AND secret_id = 'rolling'", (ROOM,))
        assert query(db, "SELECT count(*) FROM room_secret_versions WHERE secret_pk = ?", (pk,)) == [(10,)]

        assert (await http.delete(ROOM, "rolling")).status == 200
        assert query(db, "SELECT count(*) FROM room_secret_versions WHERE secret_pk = ?", (pk,)) == [(0,)]
        assert query(db, "SELECT count(*) FROM room_secrets WHERE pk = ?", (pk,)) == [(0,)]
        assert (await http.versions(ROOM, "rolling")).error == "not_found"
        assert (await http.get(ROOM, "rolling")).error == "not_found"
        assert (await http.delete(ROOM, "rolling")).error == "not_found"
        # a new secret under the same id starts again at version 1
        assert (await http.set(ROOM, "rolling", "again")).body["secret"]["version"] == 1


# -- compare-and-swap ---------------------------------------------------------------------------------


async def test_compare_and_swap_over_http(server: Server, alice: str) -> None:
    async with Http(server, alice) as http:
        assert (await http.set(ROOM, "cas", "one", expected_version=0)).body["secret"]["version"] == 1
        reply = await http.set(ROOM, "cas", "two", expected_version=0)
        assert reply.status == 409 and reply.body["error"]["code"] == 1005 and reply.body["error"]["name"] == "conflict"
        assert (await http.set(ROOM, "cas", "two", expected_version=1)).body["secret"]["version"] == 2
        assert (await http.set(ROOM, "cas", "stale", expected_version=1)).error == "conflict"
        assert await http.value(ROOM, "cas") == b"two"
        assert (await http.set(ROOM, "cas", "x", expected_version=-1)).error == "invalid_request"
        assert (await http.set(ROOM, "cas", "x", expected_version=True)).error == "invalid_request"


async def test_compare_and_swap_over_ws(server: Server, alice: str) -> None:
    async with native(server, alice, ROOM) as ws:
        await ws.request("secrets.set", {"id": "cas-ws", "text": "one", "expected_version": 0})
        with pytest.raises(ResponseError) as info:
            await ws.request("secrets.set", {"id": "cas-ws", "text": "two", "expected_version": 0})
        assert info.value.name == "conflict"
        done = await ws.request("secrets.set", {"id": "cas-ws", "text": "two", "expected_version": 1})
        assert done["secret"]["version"] == 2


# -- lists, lookups, bad input ----------------------------------------------------------------------------


async def test_lists_carry_metadata_only(server: Server, alice: str) -> None:
    async with Http(server, alice) as http:
        await http.set(ROOM, "listed", "VALUE-IN-LIST-CHECK", type="text/plain", name="Listed one")
        body = (await http.list(ROOM)).body
        async with native(server, alice, ROOM) as ws:
            ws_body = await ws.request("secrets.list")
    for listing in (body, ws_body):
        assert listing["secrets"], listing
        for entry in listing["secrets"]:
            assert set(entry) == METADATA
        listed = next(e for e in listing["secrets"] if e["id"] == "listed")
        assert (listed["type"], listed["name"], listed["owner"]) == ("text/plain", "Listed one", "alice")
        assert "VALUE-IN-LIST-CHECK" not in str(listing)
        assert base64.b64encode(b"VALUE-IN-LIST-CHECK").decode()[:20] not in str(listing)


async def test_get_of_missing_is_a_clean_not_found(server: Server, alice: str) -> None:
    async with Http(server, alice) as http:
        reply = await http.get(ROOM, "nope")
        assert reply.status == 404 and reply.body["error"] == {
            "code": 1003, "name": "not_found", "message": "secret 'nope' not found"}
        assert (await http.exists(ROOM, "nope")).body == {"exists": False}
    async with native(server, alice, ROOM) as ws:
        with pytest.raises(ResponseError) as info:
            await ws.request("secrets.get", {"id": "nope"})
        assert (info.value.code, info.value.name) == (1003, "not_found")
        assert await ws.request("secrets.exists", {"id": "nope"}) == {"exists": False}


@pytest.mark.parametrize(
    "body",
    [
        {"text": "a", "value_base64": "YQ=="},  # two value sources
        {},  # none
        {"value_base64": "not base64!"},
        {"text": 5},
        {"text": "a", "type": "bad\ntype"},
        {"text": "a", "name": "x" * 300},
        {"text": "a", "delegated_to": "bad identity"},
        {"text": "a", "for_identity": 7},
    ],
)
async def test_bad_input_is_invalid_request(server: Server, alice: str, body: dict) -> None:
    async with Http(server, alice) as http:
        reply = await http.call("PUT", Http.path(ROOM, "bad-input"), json=body)
        assert reply.status == 400 and reply.body["error"]["name"] == "invalid_request", reply.text
        assert (await http.get(ROOM, "bad-input")).error == "not_found"


async def test_bad_ids_and_bad_frames_over_ws_keep_the_connection(server: Server, alice: str) -> None:
    async with native(server, alice, ROOM) as ws:
        for data in ({"id": "../etc", "text": "a"}, {"id": "", "text": "a"}, {"id": "ok", "value": "%%%"},
                     {"id": "ok", "text": "a", "value": "YQ=="}, {"id": "ok", "text": "a", "expected_version": "1"}):
            with pytest.raises(ResponseError) as info:
                await ws.request("secrets.set", data)
            assert info.value.name == "invalid_request"
        assert (await ws.request("ping"))["pong"] is True
    async with Http(server, alice) as http:
        assert (await http.get(ROOM, "x' OR '1'='1")).error == "invalid_request"
        assert (await http.call("PUT", Http.path(ROOM, "j"), json=None)).error == "invalid_request"


# -- files --------------------------------------------------------------------------------------------


async def test_database_wal_shm_and_key_files_are_private(server: Server, alice: str) -> None:
    async with Http(server, alice) as http:
        await http.set(ROOM, "touch", "so the WAL exists")
    names = ["roomsvc.db", "roomsvc.db-wal", "roomsvc.db-shm", "master.key", "signing.key"]
    for name in names:
        mode = stat.S_IMODE((server.data_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    assert stat.S_IMODE(server.data_dir.stat().st_mode) & 0o077 == 0


# -- the audit log from the CLI ----------------------------------------------------------------------------


def test_cli_audit_filters_and_needs_an_operator(server: Server, alice: str) -> None:
    op = server.operator_token()
    stored = server.cli("room", "secret", "set", "--room", ROOM, "--id", "audited", "--text", "v", token=alice)
    assert stored.returncode == 0, stored.stderr
    result = server.cli("audit", "--identity", "alice", "--since", "3600", "--json", token=op)
    assert result.returncode == 0, result.stderr
    lines = json.loads(result.stdout)
    assert lines and all("alice" in (line["actor"], line["owner"]) for line in lines)
    assert {"time", "room", "actor", "owner", "secret_id", "action", "channel", "outcome", "detail"} == set(lines[0])
    assert any(line["secret_id"] == "audited" and line["action"] == "create" for line in lines)
    text = server.cli("audit", "--room", "nowhere", token=op)
    assert text.returncode == 0 and text.stdout == b""
    plain = server.cli("audit", "--identity", "alice", token=op).stdout.decode().splitlines()
    assert any(" room1 alice create alice/audited http ok" in line for line in plain)
    refused = server.cli("audit", token=alice)
    assert refused.returncode == 1 and b"operator" in refused.stderr


def test_settings_refuse_a_message_size_that_cannot_carry_a_maximal_secret() -> None:
    """A maximal value travels in base64 (4/3 larger): a message cap that only fits the raw
    bytes would drop the connection instead of answering too_large."""
    from roomsvc.config import load_settings
    from roomsvc.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, overrides={"secrets.max_value_size": 100_000, "websocket.max_message_size": 110_000})
    assert info.value.key == "websocket.max_message_size"
    load_settings(environ={}, overrides={"secrets.max_value_size": 100_000, "websocket.max_message_size": 135_000})
