"""Issue 10 §6: a credential reaches only the hosts its connector allows, checked by the server.

Every attack runs end to end against a real roomsvc server, a real sidecar process, a real
upstream on loopback and, for connector credentials, the real OIDC test provider (its
connector allows ``127.0.0.1`` only).
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time

import aiohttp
import jwt
import pytest

from roomsvc.crypto.tokens import mint
from roomsvc.domain.principal import build_claims
from roomsvc.transport.meshagent.packing import ErrorContent, FileContent, JsonContent
from tests.headers.test_header_injection import Proxy, Recorder
from tests.meshagent.raw_client import RawClient
from tests.oauth.conftest import OAuthEnv
from tests.oauth.flows import run_flow
from tests.support.native_client import ResponseError
from tests.support.server import REPO, Server
from tests.vault.conftest import audit_lines, native, now

ROOM = "hosts"
OAUTH_ROOM = "room1"
SENTINEL = "sk-use-only-sentinel-4711"


def use_only_token(server: Server, identity: str, room: str = ROOM, role: str = "tool") -> str:
    claims = build_claims(identity=identity, room=room, role=role, api={"secrets": {"use_only": True}},
                          issued_at=int(time.time()), ttl=600)
    return mint(server.keyring(), claims)


async def post_headers(server: Server, token: str, room: str, specs: list[str], **extra: object) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/v1/rooms/{room}/headers", json={"header_secrets": specs, **extra},
                                headers={"Authorization": f"Bearer {token}"}) as r:
            text = await r.text()
            return r.status, await r.json(content_type=None), text


async def store_plain_secret(server: Server, identity: str, secret_id: str = "apikey") -> None:
    full = server.token(identity, ROOM, api=("secrets",), role="tool")
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{server.url}/v1/rooms/{ROOM}/secrets/{secret_id}", json={"text": SENTINEL},
                               headers={"Authorization": f"Bearer {full}"}) as r:
            assert r.status == 200, await r.text()


def denied(lines: list[dict], action: str, secret_id: str, channel_prefix: str) -> list[dict]:
    return [line for line in lines if line["action"] == action and line["secret_id"] == secret_id
            and line["outcome"] == "denied" and line["channel"].startswith(channel_prefix)]


# -- a use-only token never reads a value -----------------------------------------------------------


def test_roomsvc_token_use_only_mints_the_grant(server: Server) -> None:
    minted = server.cli("token", "--data-dir", str(server.data_dir), "--room", ROOM, "--identity", "uo-cli",
                        "--role", "tool", "--use-only")
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.decode().strip(), options={"verify_signature": False})
    assert {"name": "api", "scope": {"secrets": {"use_only": True}}} in claims["grants"]


async def test_a_use_only_token_cannot_read_a_value_over_http_but_resolves_headers(server: Server) -> None:
    await store_plain_secret(server, "uo-http")
    token = use_only_token(server, "uo-http")
    started = now() - 1
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.get(f"{server.url}/v1/rooms/{ROOM}/secrets/apikey") as r:
            text = await r.text()
            assert r.status == 403 and (await r.json())["error"]["name"] == "permission_denied", text
        assert SENTINEL not in text and base64.b64encode(SENTINEL.encode()).decode() not in text
        # metadata and existence still work
        async with session.get(f"{server.url}/v1/rooms/{ROOM}/secrets") as r:
            assert r.status == 200 and [s["id"] for s in (await r.json())["secrets"]] == ["apikey"]
        async with session.get(f"{server.url}/v1/rooms/{ROOM}/secrets/apikey/exists") as r:
            assert r.status == 200 and (await r.json())["exists"] is True
    # header resolution, for a named destination, works
    status, body, _ = await post_headers(server, token, ROOM, ["X-Api-Key:{apikey}"], destination="https://api.example.com/v1")
    assert status == 200 and body["headers"][0]["value"] == SENTINEL
    assert denied(await audit_lines(server, identity="uo-http", since=started), "read", "apikey", "http")


async def test_a_use_only_token_cannot_read_a_value_over_the_native_websocket(server: Server) -> None:
    await store_plain_secret(server, "uo-native")
    started = now() - 1
    async with native(server, use_only_token(server, "uo-native"), ROOM) as ws:
        with pytest.raises(ResponseError) as info:
            await ws.request("secrets.get", {"id": "apikey"})
        assert info.value.name == "permission_denied" and SENTINEL not in str(info.value)
        assert [s["id"] for s in (await ws.request("secrets.list"))["secrets"]] == ["apikey"]
        assert (await ws.request("secrets.exists", {"id": "apikey"}))["exists"] is True
        resolved = await ws.request("headers.resolve", {"header_secrets": ["X-Api-Key:{apikey}"],
                                                        "destination": "https://api.example.com/"})
        assert resolved["headers"][0]["value"] == SENTINEL
    assert denied(await audit_lines(server, identity="uo-native", since=started), "read", "apikey", "ws")


async def test_a_use_only_token_cannot_read_a_value_with_meshagent_get_secret(server: Server) -> None:
    await store_plain_secret(server, "uo-mesh")
    started = now() - 1
    client = await RawClient.connect(server.url, ROOM, use_only_token(server, "uo-mesh"))
    try:
        got = await client.invoke("secrets", "get_secret", JsonContent({"secret_id": "apikey"}))
        assert isinstance(got, ErrorContent) and got.code == 1001, got  # permission_denied
        assert not isinstance(got, FileContent) and SENTINEL not in repr(got)
        assert await client.invoke("secrets", "exists", JsonContent({"secret_id": "apikey"})) == JsonContent({"exists": True})
        listed = await client.invoke("secrets", "list_secrets", JsonContent({}))
        assert isinstance(listed, JsonContent) and [s["id"] for s in listed.json["secrets"]] == ["apikey"]
    finally:
        await client.close()
    assert denied(await audit_lines(server, identity="uo-mesh", since=started), "read", "apikey", "meshagent")


async def test_a_use_only_token_must_name_a_destination_even_for_unrestricted_secrets(server: Server) -> None:
    await store_plain_secret(server, "uo-nodest")
    started = now() - 1
    status, body, text = await post_headers(server, use_only_token(server, "uo-nodest"), ROOM, ["X-Api-Key:{apikey}"])
    assert status == 403 and body["error"]["name"] == "permission_denied" and "destination" in body["error"]["message"]
    assert SENTINEL not in text
    lines = await audit_lines(server, identity="uo-nodest", since=started)
    assert [line for line in lines if line["action"] == "use" and line["outcome"] == "denied"]
    assert not [line for line in lines if line["action"] == "use" and line["outcome"] == "ok"]  # nothing was read


async def test_a_use_only_grant_that_is_not_a_boolean_is_refused(server: Server) -> None:
    claims = build_claims(identity="uo-typo", room=ROOM, api={"secrets": {"use_only": "yes"}}, issued_at=int(time.time()), ttl=600)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/v1/rooms/{ROOM}/secrets",
                               headers={"Authorization": f"Bearer {mint(server.keyring(), claims)}"}) as r:
            assert r.status == 401 and "use_only" in (await r.json())["error"]["message"]


# -- header resolution is bound to a destination in allowed_hosts -----------------------------------


async def test_resolution_for_a_host_outside_allowed_hosts_is_refused_and_audited(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("gina", agent_name="toolkit", agent_role="tool") as (tool_id, person_id, tool, person):
        grant, _ = await run_flow(browser, tool, person, person_id, delegate_to=tool_id)
        access = grant["access_token"]
        token = use_only_token(oauth_env.server, tool_id, OAUTH_ROOM)
        port = oauth_env.provider.port
        started = now() - 1
        spec = [f"Authorization:Bearer {{{person_id}/oidc}}"]  # the person's credential, delegated to the toolkit
        for outside in (f"http://localhost:{port}/me", "https://127.0.0.1.evil.test/", "https://evil.test/?h=127.0.0.1",
                        f"http://[::1]:{port}/me", f"http://127.0.0.1.:{port}/me", f"http://0x7f.0.0.1:{port}/me"):
            status, body, text = await post_headers(oauth_env.server, token, OAUTH_ROOM, spec, destination=outside)
            assert status == 403 and body["error"]["name"] == "permission_denied", (outside, text)
            assert access not in text
        # URL tricks that a lax parser would read as host 127.0.0.1 are refused outright
        for trick in (f"http://127.0.0.1:{port}@evil.test/", f"http://127.0.0.1:{port}\\@evil.test/",
                      f"http://evil.test#@127.0.0.1:{port}/", "ftp://127.0.0.1/", "//127.0.0.1/me", "http://127.0.0.1 /"):
            status, body, text = await post_headers(oauth_env.server, token, OAUTH_ROOM, spec, destination=trick)
            assert status == 400 and body["error"]["name"] == "invalid_request", (trick, text)
            assert access not in text
        # the native op refuses too
        async with native(oauth_env.server, token, OAUTH_ROOM) as ws:
            with pytest.raises(ResponseError) as info:
                await ws.request("headers.resolve", {"header_secrets": spec, "destination": f"http://localhost:{port}/"})
            assert info.value.name == "permission_denied" and "localhost" in info.value.message
            # an allowed host, in any case and on any port, resolves
            ok = await ws.request("headers.resolve", {"header_secrets": spec, "destination": f"HTTP://127.0.0.1:{port}/me"})
            assert ok["headers"][0]["value"].startswith("Bearer ")
        lines = await audit_lines(oauth_env.server, identity=tool_id, since=started)
        assert len(denied(lines, "use", "oidc", "http.headers")) == 6
        assert [line for line in denied(lines, "use", "oidc", "ws.headers") if "localhost" in line["detail"]]


async def test_resolution_without_a_destination_is_refused_where_hosts_are_restricted(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    async with oauth_env.agent_and_person("hank", agent_name="toolkit", agent_role="tool") as (tool_id, person_id, tool, person):
        grant, _ = await run_flow(browser, tool, person, person_id, delegate_to=tool_id)
        # a full (not use-only) token: the restriction comes from the credential's allowed_hosts
        token = oauth_env.server.token(tool_id, OAUTH_ROOM, api=("secrets",), role="tool")
        spec = [f"Authorization:Bearer {{{person_id}/oidc}}"]  # the person's credential, delegated to the toolkit
        status, body, text = await post_headers(oauth_env.server, token, OAUTH_ROOM, spec)
        assert status == 403 and "destination" in body["error"]["message"] and grant["access_token"] not in text
        async with native(oauth_env.server, token, OAUTH_ROOM) as ws:
            with pytest.raises(ResponseError) as info:
                await ws.request("headers.resolve", {"header_secrets": spec})
            assert info.value.name == "permission_denied"
        cli = oauth_env.server.cli("toolkit", "headers", "--room", OAUTH_ROOM, "--header-secret", spec[0], token=token)
        assert cli.returncode != 0 and b"destination" in cli.stderr and b"Bearer" not in cli.stdout
        cli = oauth_env.server.cli("toolkit", "headers", "--room", OAUTH_ROOM, "--header-secret", spec[0],
                                   "--destination", f"{oauth_env.issuer}/me", token=token)
        assert cli.returncode == 0, cli.stderr
        assert b"Bearer " in cli.stdout


async def test_a_use_only_sidecar_reaches_an_allowed_upstream(oauth_env: OAuthEnv, browser: aiohttp.ClientSession) -> None:
    async with oauth_env.agent_and_person("ivan", agent_name="toolkit", agent_role="tool") as (tool_id, person_id, tool, person):
        await run_flow(browser, tool, person, person_id, delegate_to=tool_id)
        proxy = Proxy(oauth_env.server, use_only_token(oauth_env.server, tool_id, OAUTH_ROOM), oauth_env.issuer,
                      [f"Authorization:Bearer {{{person_id}/oidc}}"], room=OAUTH_ROOM)
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/me") as r:
                assert r.status == 200 and (await r.json())["sub"] == person_id
        finally:
            proxy.stop()


# -- the sidecar -------------------------------------------------------------------------------------

ESCAPES = ["/../admin", "/%2e%2e/admin", "/%2E%2E/admin", "/%252e%252e/admin", "/..%2fadmin", "/x%2f..%2f..%2fadmin",
           "/x/%2e/admin", "/x\\..\\admin", "/x%5c..%5cadmin"]


async def raw_status(port: int, target: str) -> int:
    """Send the request target as it is (HTTP clients normalise dot segments away)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
    finally:
        writer.close()
    return int(status_line.split()[1])


async def test_the_sidecar_refuses_paths_that_escape_the_upstream_base_path_before_resolving(server: Server) -> None:
    await store_plain_secret(server, "uo-sidecar")
    upstream = await Recorder().start()
    # cache_ttl 0: a request that got past the path check would resolve (and be audited)
    proxy = Proxy(server, use_only_token(server, "uo-sidecar"), f"{upstream.url}/api/v1", ["X-Api-Key:{apikey}"],
                  env={"ROOMSVC_PROXY_CACHE_TTL": "0"}, room=ROOM)
    try:
        port = int(proxy.url.rsplit(":", 1)[1])
        assert await raw_status(port, "/ok") == 200
        assert [seen[":path"] for seen in upstream.seen] == ["/api/v1/ok"]
        assert upstream.seen[0]["x-api-key"] == SENTINEL
        uses = len([line for line in await audit_lines(server, identity="uo-sidecar") if line["action"] == "use"])
        statuses = {target: await raw_status(port, target) for target in ESCAPES}
        assert statuses == {target: 400 for target in ESCAPES}
        assert len(upstream.seen) == 1, [seen[":path"] for seen in upstream.seen]
        after = len([line for line in await audit_lines(server, identity="uo-sidecar") if line["action"] == "use"])
        assert after == uses  # nothing was resolved for the refused requests
    finally:
        log = proxy.stop()
        await upstream.stop()
    assert SENTINEL not in log


def test_a_non_loopback_listen_address_needs_allow_remote(server: Server) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.update({"ROOMSVC_URL": server.url, "ROOMSVC_TOKEN": use_only_token(server, "uo-listen"),
                "ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "1"})
    for listen in ("0.0.0.0:0", "[::]:0", "example.com:0"):
        args = [sys.executable, "-m", "roomsvc", "toolkit", "proxy", "--room", ROOM, "--listen", listen,
                "--upstream", "http://127.0.0.1:9/", "--header-secret", "X-Api-Key:{apikey}"]
        # the old code would start listening and never return: the timeout makes that a failure
        result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=30)
        assert result.returncode != 0 and "--allow-remote" in result.stderr, (listen, result.stderr)
        assert "listening" not in result.stdout
