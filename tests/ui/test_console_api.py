"""What the console reads over HTTP, attacked: ``GET /v1/rooms/{room}/audit`` and
``GET /v1/rooms/{room}/oauth/credentials`` answer only about the caller, in its own room,
and never carry a value. (The credential listing with a real OAuth credential is tested
in test_console.py, where the provider runs.)"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from tests.support.server import Server

ALICE_VALUE = "canary-alice-9d1c"
BOB_VALUE = "canary-bob-41e0"


async def call(server: Server, path: str, token: str | None, method: str = "GET", body: Any = None) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path, headers=headers, json=body) as r:
        text = await r.text()
        return r.status, (await r.json(content_type=None)) if text else None, text


@pytest.fixture(scope="module")
async def history(server: Server) -> dict[str, str]:
    """alice and bob each store a secret in room1; carol (admin) reads alice's; bob also acts in room2."""
    tokens = {
        "alice": server.token("alice", "room1", api=("secrets",)),
        "bob": server.token("bob", "room1", api=("secrets",)),
        "carol": server.token("carol", "room1", api=("secrets", "admin")),
        "bob2": server.token("bob", "room2", api=("secrets",)),
        "dave": server.token("dave", "room1"),  # no secrets grant
    }
    put = lambda v: {"value_base64": base64.b64encode(v.encode()).decode()}  # noqa: E731
    assert (await call(server, "/v1/rooms/room1/secrets/db", tokens["alice"], "PUT", put(ALICE_VALUE)))[0] == 200
    assert (await call(server, "/v1/rooms/room1/secrets/bobs", tokens["bob"], "PUT", put(BOB_VALUE)))[0] == 200
    assert (await call(server, "/v1/rooms/room2/secrets/elsewhere", tokens["bob2"], "PUT", put(BOB_VALUE)))[0] == 200
    assert (await call(server, "/v1/rooms/room1/secrets/db?for_identity=alice", tokens["carol"]))[0] == 200
    # bob tries alice's secret: denied, and that denial is bob's own line
    assert (await call(server, "/v1/rooms/room1/secrets/db?for_identity=alice", tokens["bob"]))[0] == 403
    return tokens


async def test_an_identity_sees_its_own_lines_and_what_others_did_with_its_secrets(server: Server, history: dict[str, str]) -> None:
    status, body, text = await call(server, "/v1/rooms/room1/audit", history["alice"])
    assert status == 200, text
    lines = body["audit"]
    assert lines and all("alice" in (line["actor"], line["owner"]) and line["room"] == "room1" for line in lines), lines
    assert any(line["actor"] == "alice" and line["secret_id"] == "db" and line["action"] == "create" for line in lines), lines
    assert any(line["actor"] == "carol" and line["owner"] == "alice" for line in lines), lines  # who used her secret
    assert any(line["actor"] == "bob" and line["outcome"] != "ok" for line in lines), lines  # and who tried to
    assert ALICE_VALUE not in text and BOB_VALUE not in text
    assert base64.b64encode(ALICE_VALUE.encode()).decode() not in text


async def test_no_line_about_another_identity_or_another_room(server: Server, history: dict[str, str]) -> None:
    status, body, text = await call(server, "/v1/rooms/room1/audit?limit=200", history["bob"])
    assert status == 200, text
    lines = body["audit"]
    assert all("bob" in (line["actor"], line["owner"]) for line in lines), lines
    assert not any(line["actor"] == "alice" or line["actor"] == "carol" for line in lines), lines
    assert not any(line["secret_id"] == "elsewhere" or line["room"] != "room1" for line in lines), lines
    # bob's own denied attempt on alice's secret is bob's line: he did it
    assert any(line["actor"] == "bob" and line["owner"] == "alice" and line["outcome"] != "ok" for line in lines), lines
    assert ALICE_VALUE not in text and BOB_VALUE not in text
    # the query string cannot widen it: there is no identity or room parameter to forge
    _, forged, _ = await call(server, "/v1/rooms/room1/audit?identity=alice&room=room1&for_identity=alice", history["bob"])
    assert forged["audit"] and all("bob" in (x["actor"], x["owner"]) for x in forged["audit"]), forged


@pytest.mark.parametrize("path", ["/v1/rooms/room1/audit", "/v1/rooms/room1/oauth/credentials"])
async def test_who_may_not_read_them(server: Server, history: dict[str, str], path: str) -> None:
    assert (await call(server, path, None))[0] == 401
    assert (await call(server, path, "not.a.token"))[0] == 401
    status, body, _ = await call(server, path, history["bob2"])  # bob's token for room2
    assert status == 403 and body["error"]["name"] == "permission_denied"
    status, body, _ = await call(server, path, history["dave"])  # no secrets grant
    assert status == 403 and body["error"]["name"] == "permission_denied"
    status, _, _ = await call(server, path.replace("room1", "room2"), history["alice"])
    assert status == 403
    operator = server.operator_token()  # a project token has no room: not a console
    assert (await call(server, path, operator))[0] == 403


async def test_bad_limits_are_refused_with_a_clear_error(server: Server, history: dict[str, str]) -> None:
    for bad in ("0", "-1", "x", "201", "1e3", ""):
        status, body, _ = await call(server, f"/v1/rooms/room1/audit?limit={bad}", history["alice"])
        assert status == 400 and "limit" in body["error"]["message"], (bad, body)


async def test_the_credentials_listing_holds_only_the_callers_oauth_credentials(server: Server, history: dict[str, str]) -> None:
    status, body, text = await call(server, "/v1/rooms/room1/oauth/credentials", history["alice"])
    assert status == 200 and body == {"credentials": []}, text  # a plain secret is not a credential
    # the listing is always the caller's own: a for_identity is not read
    status, body, text = await call(server, "/v1/rooms/room1/oauth/credentials?for_identity=alice", history["bob"])
    assert status == 200 and body == {"credentials": []}, text
