"""The native and the MeshAgent protocol answer the same request the same way.

One real server; the same identity on both protocols; each request sent over the native
websocket (tests/support/native_client.py) and as a MeshAgent tool call
(tests/meshagent/raw_client.py), against the same stored state. The answers must agree
in outcome (ok / denied / not_found / invalid), in data, and in the error's message text:
both protocols are adapters over the same services, so a difference is a drifted copy.

Where MeshAgent's wire has no way to say it, the comparison says so: ``get_secret`` of a
missing secret answers empty content (MeshAgent's "no such secret"), not an error.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest

from roomsvc.transport.meshagent.packing import (
    BinaryContent,
    Content,
    EmptyContent,
    ErrorContent,
    FileContent,
    JsonContent,
)
from tests.meshagent.raw_client import RawClient
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import Server

ROOM = "room1"
NATIVE_WORDS = {"permission_denied": "denied", "not_found": "not_found", "invalid_request": "invalid"}
MESH_CODES = {1001: "denied", 1002: "invalid", 1003: "not_found"}


@dataclass(frozen=True)
class Answer:
    outcome: str  # ok | denied | not_found | invalid | error:<what>
    data: Any = None
    message: str | None = None


async def native(client: NativeClient, kind: str, data: dict[str, Any]) -> Answer:
    try:
        result = await client.request(kind, data)
    except ResponseError as exc:
        return Answer(NATIVE_WORDS.get(str(exc.name), f"error:{exc.name}"), None, exc.message)
    if kind == "secrets.get":
        return Answer("ok", base64.b64decode(result["value"]))
    if kind == "secrets.exists":
        return Answer("ok", result["exists"])
    if kind == "secrets.list":
        return Answer("ok", sorted((s["id"], s["type"]) for s in result["secrets"]))
    return Answer("ok")


async def mesh(client: RawClient, tool: str, content: Content) -> Answer:
    reply = await client.invoke("secrets", tool, content)
    if isinstance(reply, ErrorContent):
        return Answer(MESH_CODES.get(reply.code or 0, f"error:{reply.code}"), None, reply.text)
    if tool == "get_secret":
        assert isinstance(reply, (FileContent, EmptyContent)), reply
        return Answer("ok", reply.data) if isinstance(reply, FileContent) else Answer("not_found")
    if tool == "exists":
        assert isinstance(reply, JsonContent)
        return Answer("ok", reply.json["exists"])
    if tool == "list_secrets":
        assert isinstance(reply, JsonContent)
        return Answer("ok", sorted((s["id"], s["type"]) for s in reply.json["secrets"]))
    return Answer("ok")


@pytest.fixture
async def both(server: Server) -> Any:
    token = server.token("same-answers", ROOM, api=("secrets",))
    n = await NativeClient.connect(server.ws_url(ROOM), token)
    m = await RawClient.connect(server.url, ROOM, token)
    try:
        yield n, m
    finally:
        await n.close()
        await m.close()


async def test_set_get_exists_list_and_delete_agree(both: Any) -> None:
    n, m = both
    # set: each protocol writes its own secret, then every read is asked of both
    assert await native(n, "secrets.set", {"id": "eq-n", "text": "value", "type": "text/plain"}) == Answer("ok")
    assert await mesh(m, "set_secret", BinaryContent({"secret_id": "eq-m", "type": "text/plain", "has_data": True},
                                                     b"value")) == Answer("ok")
    for sid in ("eq-n", "eq-m"):
        got = await native(n, "secrets.get", {"id": sid}), await mesh(m, "get_secret", JsonContent({"secret_id": sid}))
        assert got[0] == got[1] == Answer("ok", b"value"), sid
        found = await native(n, "secrets.exists", {"id": sid}), await mesh(m, "exists", JsonContent({"secret_id": sid}))
        assert found[0] == found[1] == Answer("ok", True), sid
    listed = await native(n, "secrets.list", {}), await mesh(m, "list_secrets", JsonContent({}))
    assert listed[0] == listed[1]
    assert [entry[0] for entry in listed[0].data] == ["eq-m", "eq-n"]
    # delete: each protocol deletes one; then neither exists for either
    assert await native(n, "secrets.delete", {"id": "eq-m"}) == Answer("ok")
    assert await mesh(m, "delete_secret", JsonContent({"id": "eq-n"})) == Answer("ok")
    for sid in ("eq-n", "eq-m"):
        found = await native(n, "secrets.exists", {"id": sid}), await mesh(m, "exists", JsonContent({"secret_id": sid}))
        assert found[0] == found[1] == Answer("ok", False), sid
    listed = await native(n, "secrets.list", {}), await mesh(m, "list_secrets", JsonContent({}))
    assert listed[0] == listed[1] == Answer("ok", [])


async def test_a_missing_secret_is_not_found_with_the_same_message(both: Any) -> None:
    n, m = both
    deleted = await native(n, "secrets.delete", {"id": "never-was"}), await mesh(m, "delete_secret", JsonContent({"id": "never-was"}))
    assert deleted[0].outcome == "not_found" and deleted[0] == deleted[1]
    assert deleted[0].message
    # get: MeshAgent's wire answers a missing secret with empty content, not an error
    got = await native(n, "secrets.get", {"id": "never-was"}), await mesh(m, "get_secret", JsonContent({"secret_id": "never-was"}))
    assert got[0].outcome == got[1].outcome == "not_found"


async def test_a_permission_denial_is_the_same_with_the_same_message(server: Server, both: Any) -> None:
    n, m = both
    owner = await NativeClient.connect(server.ws_url(ROOM), server.token("same-owner", ROOM, api=("secrets",)))
    try:
        await owner.request("secrets.set", {"id": "private", "text": "mine"})
    finally:
        await owner.close()
    addressing = {"for_identity": "same-owner"}
    pairs = [
        (await native(n, "secrets.get", {"id": "private", **addressing}),
         await mesh(m, "get_secret", JsonContent({"secret_id": "private", **addressing}))),
        (await native(n, "secrets.set", {"id": "private", "text": "theirs", **addressing}),
         await mesh(m, "set_secret", BinaryContent({"secret_id": "private", "has_data": True, **addressing}, b"theirs"))),
        (await native(n, "secrets.delete", {"id": "private", **addressing}),
         await mesh(m, "delete_secret", JsonContent({"id": "private", **addressing}))),
        (await native(n, "secrets.list", addressing), await mesh(m, "list_secrets", JsonContent(addressing))),
    ]
    for got_native, got_mesh in pairs:
        assert got_native.outcome == "denied" and got_native == got_mesh
        assert got_native.message


async def test_an_invalid_request_is_the_same_with_the_same_message(both: Any) -> None:
    n, m = both
    bad_id = "x" * 1000
    pairs = [
        (await native(n, "secrets.set", {"id": bad_id, "text": "v"}),
         await mesh(m, "set_secret", BinaryContent({"secret_id": bad_id, "has_data": True}, b"v"))),
        (await native(n, "secrets.get", {"id": bad_id}), await mesh(m, "get_secret", JsonContent({"secret_id": bad_id}))),
        (await native(n, "secrets.set", {"id": "ok-id", "text": "v", "delegated_to": 7}),
         await mesh(m, "set_secret", BinaryContent({"secret_id": "ok-id", "has_data": True, "delegated_to": 7}, b"v"))),
    ]
    for got_native, got_mesh in pairs:
        assert got_native.outcome == "invalid" and got_native == got_mesh
        assert got_native.message
