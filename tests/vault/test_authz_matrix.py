"""Who may do what with a room secret: every (actor, operation) cell over HTTP and over
the native websocket, against one real server. SecretService holds the rules; both
transports must give the same answers, and every denial must be audited.

The target in every cell is a fresh secret owned by alice in room1 and delegated to
bob. Expected outcomes:

* ``ok``        the operation acted on the target (for list: the target is listed)
* ``denied``    permission_denied, and an audit line with outcome ``denied``
* ``not_found`` exactly the answer for a secret that does not exist
* ``own``       a set that went to the caller's own namespace; the target is untouched
* ``hidden``    a list that does not show the target
* ``invalid``   invalid_request (e.g. a secret delegated to its own owner), audited as ``refused``
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.native_client import ResponseError
from tests.support.server import Server
from tests.vault.conftest import Http, audit_lines, native

ROOM = "room1"
OPS = ("set", "get", "exists", "list", "delete")
#: the audit action each operation writes
AUDIT_ACTION = {"set": ("set", "create", "update"), "get": ("read",), "exists": ("exists",), "list": ("list",),
                "delete": ("delete",)}


@dataclass(frozen=True)
class Actor:
    identity: str
    room: str
    api: tuple[str, ...]
    addressing: dict[str, Any]


ACTORS = {
    "owner": Actor("alice", ROOM, ("secrets",), {"delegated_to": "bob"}),
    "other_identity": Actor("carol", ROOM, ("secrets",), {"delegated_to": "bob"}),
    "admin_for_identity": Actor("dave", ROOM, ("secrets", "admin"), {"for_identity": "alice", "delegated_to": "bob"}),
    "non_admin_for_identity": Actor("carol", ROOM, ("secrets",), {"for_identity": "alice", "delegated_to": "bob"}),
    # the delegate naming the owner (the way it would try to change the owner's secret)
    "delegate": Actor("bob", ROOM, ("secrets",), {"for_identity": "alice", "delegated_to": "bob"}),
    # the delegate naming only itself: reads resolve to what was delegated to it
    "delegate_by_id": Actor("bob", ROOM, ("secrets",), {"delegated_to": "bob"}),
    "delegate_redelegating": Actor("bob", ROOM, ("secrets",), {"for_identity": "alice", "delegated_to": "eve"}),
    "same_identity_other_room": Actor("alice", "room2", ("secrets",), {"delegated_to": "bob"}),
    "no_secrets_grant": Actor("alice", ROOM, (), {"delegated_to": "bob"}),
    "admin_without_secrets_grant": Actor("dave", ROOM, ("admin",), {"for_identity": "alice", "delegated_to": "bob"}),
}

#                            set        get         exists      list       delete
_TABLE = """
owner                        ok         ok          ok          ok         ok
other_identity               own        not_found   not_found   hidden     not_found
admin_for_identity           ok         ok          ok          ok         ok
non_admin_for_identity       denied     denied      denied      denied     denied
delegate                     denied     ok          ok          denied     denied
delegate_by_id               invalid    ok          ok          hidden     not_found
delegate_redelegating        denied     denied      denied      denied     denied
same_identity_other_room     denied     denied      denied      denied     denied
no_secrets_grant             denied     denied      denied      denied     denied
admin_without_secrets_grant  denied     denied      denied      denied     denied
"""
EXPECTED = {line.split()[0]: dict(zip(OPS, line.split()[1:])) for line in _TABLE.strip().splitlines()}
#: over the websocket a token for room2 can only connect to room2: there it sees its own
#: (empty) namespace instead of being refused room1
WS_OVERRIDES = {
    ("same_identity_other_room", "set"): "own",
    ("same_identity_other_room", "get"): "not_found",
    ("same_identity_other_room", "exists"): "not_found",
    ("same_identity_other_room", "list"): "hidden",
    ("same_identity_other_room", "delete"): "not_found",
}

CELLS = [(channel, actor, op) for channel in ("http", "ws") for actor in ACTORS for op in OPS]


def test_the_table_covers_every_actor_and_operation() -> None:
    assert set(EXPECTED) == set(ACTORS)
    assert all(set(row) == set(OPS) and set(row.values()) <= {"ok", "denied", "not_found", "own", "hidden", "invalid"}
               for row in EXPECTED.values())


@dataclass
class Result:
    ok: bool
    data: Any = None
    error: str | None = None
    message: str | None = None


async def perform(server: Server, channel: str, actor: Actor, op: str, secret_id: str, value: str) -> Result:
    token = server.token(actor.identity, actor.room, api=actor.api)
    a = actor.addressing
    if channel == "http":
        async with Http(server, token) as http:
            if op == "set":
                reply = await http.set(ROOM, secret_id, value, **a)
            elif op == "get":
                reply = await http.get(ROOM, secret_id, **a)
            elif op == "exists":
                reply = await http.exists(ROOM, secret_id, **a)
            elif op == "list":
                reply = await http.list(ROOM, for_identity=a.get("for_identity"))
            else:
                reply = await http.delete(ROOM, secret_id, **a)
        if reply.error:
            return Result(False, error=reply.error, message=reply.body["error"]["message"])
        data = reply.body
        if op == "get":
            data = {**data, "value": data["value_base64"]}
        return Result(True, data)
    async with native(server, token, actor.room) as ws:
        data: dict[str, Any] = {"id": secret_id, **{k: v for k, v in a.items()}}
        if op == "set":
            data["text"] = value
        if op == "list":
            data = {"for_identity": a.get("for_identity")} if a.get("for_identity") else {}
        try:
            return Result(True, await ws.request(f"secrets.{op}", data))
        except ResponseError as exc:
            return Result(False, error=exc.name, message=exc.message)


def normalize(op: str, result: Result, secret_id: str, actor: Actor | None = None) -> str:
    """Turn an answer into one of the table's words (exists=false reads as not_found)."""
    if not result.ok:
        return {"permission_denied": "denied", "not_found": "not_found", "invalid_request": "invalid"}.get(
            result.error or "", f"error:{result.error}")
    if op == "exists":
        return "ok" if result.data["exists"] else "not_found"
    if op == "list":
        listed = [s for s in result.data["secrets"] if s["id"] == secret_id]
        assert all("value" not in s and "value_base64" not in s for s in result.data["secrets"])
        return "ok" if listed else "hidden"
    if op == "set" and (result.data["secret"]["owner"] != "alice" or (actor and actor.room != ROOM)):
        return "own"  # a write into another namespace: (room, owner) is not (room1, alice)
    return "ok"


@pytest.mark.parametrize("channel, actor_name, op", CELLS, ids=[f"{c}-{a}-{o}" for c, a, o in CELLS])
async def test_cell(server: Server, channel: str, actor_name: str, op: str) -> None:
    actor = ACTORS[actor_name]
    expected = WS_OVERRIDES.get((actor_name, op), EXPECTED[actor_name][op]) if channel == "ws" else EXPECTED[actor_name][op]
    secret_id = f"m-{channel}-{actor_name}-{op}".replace("_", "-")
    original = f"original-{uuid.uuid4().hex}"
    started = time.time() - 1
    async with Http(server, server.token("alice", ROOM, api=("secrets",))) as owner:
        assert (await owner.set(ROOM, secret_id, original, delegated_to="bob")).status == 200

        new_value = f"changed-{uuid.uuid4().hex}"
        result = await perform(server, channel, actor, op, secret_id, new_value)
        assert normalize(op, result, secret_id, actor) == expected, (result, expected)

        # what the owner sees afterwards proves whether the cell acted on the target
        after = await owner.value(ROOM, secret_id, delegated_to="bob")
        if expected == "ok" and op == "set":
            assert after == new_value.encode()
        elif expected == "ok" and op == "delete":
            assert after is None
        else:
            assert after == original.encode()
        if expected == "ok" and op == "get":
            assert base64.b64decode(result.data["value"]) == original.encode()

        if expected == "not_found":
            # indistinguishable from a secret that never existed (same code, same words)
            missing = await perform(server, channel, actor, op, secret_id + "-never", new_value)
            assert normalize(op, missing, secret_id) == "not_found"
            if not missing.ok:
                assert (missing.error, missing.message.replace("-never", "")) == (result.error, result.message)

    # every cell leaves an audit line; denials say so
    lines = [
        line for line in await audit_lines(server, identity=actor.identity, since=started)
        if line["actor"] == actor.identity and line["channel"] == channel and line["action"] in AUDIT_ACTION[op]
        and line["secret_id"] in (secret_id, "*")
    ]
    wanted = {"denied": "denied", "not_found": "not_found", "invalid": "refused"}.get(expected, "ok")
    assert any(line["outcome"] == wanted for line in lines), (wanted, lines)
    if expected == "denied":
        denial = next(line for line in lines if line["outcome"] == "denied")
        assert denial["room"] == ROOM and denial["detail"]
        assert original not in str(lines) and new_value not in str(lines)


async def test_delegation_is_found_by_id_only_when_unambiguous(server: Server) -> None:
    """Two owners delegating the same id to bob: bob must name the owner."""
    async with Http(server, server.token("erin", ROOM, api=("secrets",))) as erin, \
            Http(server, server.token("frank", ROOM, api=("secrets",))) as frank, \
            Http(server, server.token("bob", ROOM, api=("secrets",))) as bob:
        await erin.set(ROOM, "dup", "from-erin", delegated_to="bob")
        assert await bob.value(ROOM, "dup", delegated_to="bob") == b"from-erin"
        await frank.set(ROOM, "dup", "from-frank", delegated_to="bob")
        reply = await bob.get(ROOM, "dup", delegated_to="bob")
        assert reply.error == "invalid_request" and "for_identity" in reply.body["error"]["message"]
        assert await bob.value(ROOM, "dup", delegated_to="bob", for_identity="frank") == b"from-frank"
        assert await bob.value(ROOM, "dup", delegated_to="bob", for_identity="erin") == b"from-erin"
        # without the delegation field, naming an owner is acting for another identity
        assert (await bob.get(ROOM, "dup", for_identity="erin")).error == "permission_denied"
