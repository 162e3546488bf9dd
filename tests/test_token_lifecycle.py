"""Tokens and sessions (issue 10, section 3): a session ends when its token expires or is
revoked, on both websocket protocols; revocation by jti and by identity through the CLI;
one pre-authentication deadline; a cap on unauthenticated sockets; strict token parsing
on every transport. End to end through a real server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from roomsvc.crypto.tokens import describe_unverified, mint
from roomsvc.domain.principal import build_claims
from roomsvc.transport.meshagent.packing import ErrorContent, JsonContent
from tests.meshagent.raw_client import RawClient
from tests.support.inprocess import InProcessServer
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import Server
from tests.support.waiting import until

#: an upper bound for waiting on a close that should come (a failure, not a timing check)
CLOSE_WAIT = 20


def jti_of(token: str) -> str:
    return describe_unverified(token)["jti"]


async def http_status(server: Server, token: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/v1/rooms/room1/secrets", headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status


async def wait_native_closed(client: NativeClient) -> int | None:
    await asyncio.wait_for(client.closed.wait(), CLOSE_WAIT)
    return client.ws.close_code


# -- expiry -------------------------------------------------------------------------------------


async def test_an_expiring_token_closes_native_and_meshagent_sockets_with_4001(make_server) -> None:
    server = make_server({"ROOMSVC_TOKENS_LEEWAY": "0"})
    native = await NativeClient.connect(server.ws_url("room1"), server.token("exp-n", api=("secrets",), ttl=3))
    mesh = await RawClient.connect(server.url, "room1", server.token("exp-m", api=("secrets",), ttl=3))
    try:
        assert await wait_native_closed(native) == 4001
        assert await mesh.wait_closed(timeout=CLOSE_WAIT) == 4001
    finally:
        await native.close()
        await mesh.close()


@pytest.fixture
async def fake_time_server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    """An in-process server on a clock the test moves: the token expires for the server
    while the socket's expiry timer (real time, ten minutes away) has not fired, so only
    the per-request check can refuse."""
    server = await InProcessServer(tmp_path / "data", env={"ROOMSVC_TOKENS_LEEWAY": "0"}).start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_request_on_a_socket_whose_token_expired_is_refused(fake_time_server) -> None:
    server = fake_time_server
    native = await NativeClient.connect(server.ws_url("room1"), server.token("late-n", api=("secrets",)))
    mesh = await RawClient.connect(server.url, "room1", server.token("late-m", api=("secrets",)))
    try:
        await native.request("secrets.list")  # fine while the token is valid
        server.clock.advance(601)
        with pytest.raises((ResponseError, ConnectionError)) as refused:
            await native.request("secrets.list")
        if isinstance(refused.value, ResponseError):
            assert refused.value.name == "unauthenticated" and "expired" in (refused.value.message or "")
        assert await wait_native_closed(native) == 4001
        try:  # the refusal is answered, then the socket closed: the answer may not make it out
            reply = await mesh.invoke("secrets", "list_secrets", JsonContent({}))
        except (asyncio.TimeoutError, ConnectionError):
            reply = None
        assert reply is None or (isinstance(reply, ErrorContent) and reply.code == 1001 and "expired" in reply.text)
        assert await mesh.wait_closed(timeout=CLOSE_WAIT) == 4001
    finally:
        await native.close()
        await mesh.close()


# -- revocation ------------------------------------------------------------------------------------


async def revoke(server: Server, *args: str) -> None:
    # in a thread: a blocked event loop would not answer the server's heartbeat pings,
    # and the server would drop the test's sockets (1006) before the revocation does
    done = await asyncio.to_thread(server.cli, "token", "revoke", *args, token=server.operator_token())
    assert done.returncode == 0, done.stderr.decode()


async def test_cli_revoke_by_jti_closes_open_sockets_and_refuses_http(server: Server) -> None:
    token = server.token("jti-victim", api=("secrets",))
    other = server.token("jti-victim", api=("secrets",))  # the same identity, another token
    native = await NativeClient.connect(server.ws_url("room1"), token)
    mesh = await RawClient.connect(server.url, "room1", token)
    try:
        assert await http_status(server, token) == 200
        await revoke(server, "--jti", jti_of(token))
        assert await wait_native_closed(native) == 4001
        assert await mesh.wait_closed(timeout=CLOSE_WAIT) == 4001
        assert await http_status(server, token) == 401
        assert await http_status(server, other) == 200
    finally:
        await native.close()
        await mesh.close()


async def test_cli_revoke_by_identity_closes_sockets_and_later_tokens_work(server: Server) -> None:
    token = server.token("id-victim", api=("secrets",))
    native = await NativeClient.connect(server.ws_url("room1"), token)
    mesh = await RawClient.connect(server.url, "room1", server.token("id-victim", api=("secrets",)))
    try:
        await revoke(server, "--identity", "id-victim")
        assert await wait_native_closed(native) == 4001
        assert await mesh.wait_closed(timeout=CLOSE_WAIT) == 4001
        assert await http_status(server, token) == 401
        # a MeshAgent-SDK-style token without iat cannot show it is newer: refused too
        no_iat = {k: v for k, v in build_claims(identity="id-victim", room="room1", api={"secrets": {}},
                                                issued_at=int(time.time()), ttl=600).items() if k != "iat"}
        assert await http_status(server, mint(server.keyring(), no_iat)) == 401
    finally:
        await native.close()
        await mesh.close()
    # iat is whole seconds: a token minted in the revocation's second is revoked too, so
    # wait for the real server's clock (a subprocess: not ours to move) to reach the next one
    revoked_at = time.time()
    await until(lambda: int(time.time()) > int(revoked_at), "the next whole second")
    fresh = server.token("id-victim", api=("secrets",))
    assert await http_status(server, fresh) == 200
    again = await NativeClient.connect(server.ws_url("room1"), fresh)
    await again.close()


async def test_cli_revoke_by_identity_in_one_room_spares_the_others(server: Server) -> None:
    elsewhere = server.token("room-victim", "room2", api=("secrets",))
    here = server.token("room-victim", api=("secrets",))
    await revoke(server, "--identity", "room-victim", "--room", "room2")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/v1/rooms/room2/secrets", headers={"Authorization": f"Bearer {elsewhere}"}) as r:
            assert r.status == 401
    assert await http_status(server, here) == 200


async def test_only_an_operator_may_revoke_and_the_attempt_is_audited(server: Server) -> None:
    admin_in_room = server.token("sneaky", api=("admin", "secrets"))
    done = server.cli("token", "revoke", "--identity", "operator", token=admin_in_room)
    assert done.returncode == 1 and "operator" in done.stderr.decode()
    audit = server.cli("audit", "--identity", "sneaky", "--json", token=server.operator_token())
    lines = json.loads(audit.stdout)
    assert any(line["action"] == "token.revoke" and line["outcome"] == "denied" for line in lines)


async def test_a_revocation_survives_a_restart(make_server, tmp_path: Path) -> None:
    data = tmp_path / "restart"
    server = make_server(data_dir=data)
    token = server.token("persist-victim", api=("secrets",))
    await revoke(server, "--jti", jti_of(token))
    server.stop()
    again = make_server(data_dir=data)
    assert await http_status(again, token) == 401
    lines = json.loads(again.cli("audit", "--json", token=again.operator_token()).stdout)
    assert any(line["action"] == "token.revoke" and line["outcome"] == "ok" for line in lines)


# -- before authentication -------------------------------------------------------------------------


async def test_the_auth_deadline_holds_while_the_client_keeps_pinging(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        # pings in lock step with the server's pongs (autoping off, so the test sees them):
        # the client is never idle, and the auth deadline must close it all the same
        ws = await http.ws_connect(server.ws_url("room1"), autoping=False)
        pongs = 0
        try:
            await ws.ping()
            msg = await asyncio.wait_for(ws.receive(), CLOSE_WAIT)
            while msg.type in (aiohttp.WSMsgType.PONG, aiohttp.WSMsgType.PING):
                if msg.type == aiohttp.WSMsgType.PING:
                    await ws.pong(msg.data)
                else:
                    pongs += 1
                    await ws.ping()
                msg = await asyncio.wait_for(ws.receive(), CLOSE_WAIT)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 4008 and pongs > 1
        finally:
            await ws.close()


async def test_the_cap_on_unauthenticated_sockets_refuses_the_next_one(make_server) -> None:
    server = make_server({"ROOMSVC_WEBSOCKET_MAX_UNAUTHENTICATED": "2", "ROOMSVC_WEBSOCKET_AUTH_TIMEOUT": "60"})
    async with aiohttp.ClientSession() as http:
        waiting = [await http.ws_connect(server.ws_url("room1")) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url("room1"))
        assert refused.value.status == 503
        async with http.get(server.ws_url("room1"), headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                            "Sec-WebSocket-Version": "13",
                                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            assert r.status == 503 and "max_unauthenticated" in (await r.json())["error"]["message"]
        # a socket with its token in the upgrade is not held back by the cap
        authed = await NativeClient.connect(server.ws_url("room1"), server.token("capped", api=("secrets",)), session=http)
        await authed.close()
        # once one of the waiting sockets authenticates, its place is free again
        await waiting[0].send_str(json.dumps({"type": "auth", "token": server.token("cap-a")}))
        assert json.loads((await waiting[0].receive(timeout=10)).data)["type"] == "welcome"
        third = await http.ws_connect(server.ws_url("room1"))
        for ws in (*waiting, third):
            await ws.close()


# -- strict parsing ----------------------------------------------------------------------------------


def _seg(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forge(server: Server, header_json: str, payload_json: str, *, tamper: Any = None) -> str:
    """A token signed with the server's own key over exactly these segments (so only
    the strict parser can refuse it: the signature verifies)."""
    key = server.keyring().primary
    h, p = _seg(header_json.encode()), _seg(payload_json.encode())
    if tamper is not None:
        h, p = tamper(h, p)
    sig = _seg(hmac.new(key.secret, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{sig}"


def _payload(server: Server, identity: str, **extra: Any) -> dict[str, Any]:
    claims = build_claims(identity=identity, room="room1", api={"secrets": {}}, issued_at=int(time.time()), ttl=600)
    claims["kid"] = server.keyring().primary.kid
    claims.update(extra)
    return claims


def _padded(h: str, p: str) -> tuple[str, str]:
    while len(p) % 4 == 0:  # make room for padding
        p = _seg(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) + b" ")
    return h, p + "=" * (-len(p) % 4)


def _spaced(h: str, p: str) -> tuple[str, str]:
    return h, p[:8] + "    " + p[8:]  # four, so a lenient decoder's padding arithmetic still works


BAD_TOKENS = {
    "padded": lambda s: forge(s, '{"alg":"HS256","typ":"JWT"}', json.dumps(_payload(s, "strict-a")), tamper=_padded),
    "whitespace": lambda s: forge(s, '{"alg":"HS256","typ":"JWT"}', json.dumps(_payload(s, "strict-b")), tamper=_spaced),
    "duplicate-claim": lambda s: forge(
        s, '{"alg":"HS256","typ":"JWT"}', '{"name":"mallory",' + json.dumps(_payload(s, "strict-c"))[1:]),
    "duplicate-header": lambda s: forge(s, '{"alg":"HS256","alg":"HS256","typ":"JWT"}', json.dumps(_payload(s, "strict-d"))),
    "empty-name": lambda s: forge(s, '{"alg":"HS256","typ":"JWT"}', json.dumps(_payload(s, "strict-e", name=""))),
    "empty-jti": lambda s: forge(s, '{"alg":"HS256","typ":"JWT"}', json.dumps(_payload(s, "strict-f", jti=""))),
    "empty-sub": lambda s: forge(s, '{"alg":"HS256","typ":"JWT"}', json.dumps(_payload(s, "strict-g", sub=" "))),
    "non-canonical-signature": lambda s: _bend_signature(mint(s.keyring(), _payload(s, "strict-h"))),
}


def _bend_signature(token: str) -> str:
    """The last character of a 32-byte signature has two unused bits: flip one."""
    head, sig = token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return f"{head}.{sig[:-1]}{alphabet[alphabet.index(sig[-1]) ^ 1]}"


async def test_a_forged_token_in_good_form_is_accepted(server: Server) -> None:
    """Sanity of the attack set: :func:`forge` itself makes tokens the server accepts."""
    good = forge(server, '{"alg":"HS256","typ":"JWT"}', json.dumps(_payload(server, "strict-ok")))
    assert await http_status(server, good) == 200


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_malformed_tokens_are_refused_on_every_transport(server: Server, kind: str) -> None:
    token = BAD_TOKENS[kind](server)
    assert await http_status(server, token) == 401
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as native_refused:
            await http.ws_connect(server.ws_url("room1"), headers={"Authorization": f"Bearer {token}"})
        assert native_refused.value.status == 401
        ws = await http.ws_connect(server.ws_url("room1"))
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        msg = await ws.receive(timeout=CLOSE_WAIT)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 4001
        with pytest.raises(aiohttp.WSServerHandshakeError) as mesh_refused:
            await http.ws_connect(f"{server.url}/rooms/room1", headers={"Authorization": f"Bearer {token}"})
        assert mesh_refused.value.status == 403
