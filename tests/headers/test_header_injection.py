"""Header injection for toolkits: the headers endpoint, the CLI and the sidecar proxy,
against a real server, a real proxy process and recording upstream servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web

from tests.support.server import REPO, Server
from tests.support.waiting import until

ROOM = "tools"


class Recorder:
    """A small upstream that records the headers of every request it receives."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.seen: list[dict[str, str]] = []
        self.redirect_to = redirect_to
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> "Recorder":
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.seen.append({**{k.lower(): v for k, v in request.headers.items()}, ":path": request.path_qs, ":body": body.decode()})
            if self.redirect_to and request.path.endswith("/redirect"):
                raise web.HTTPFound(self.redirect_to + "/landing")
            return web.json_response({"path": request.path_qs, "got": len(body)})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


class Proxy:
    def __init__(self, server: Server, token: str, upstream: str, specs: list[str], env: dict[str, str] | None = None,
                 room: str = ROOM) -> None:
        full = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        full.update({"ROOMSVC_URL": server.url, "ROOMSVC_TOKEN": token, "ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "1",
                     "ROOMSVC_PROXY_CACHE_TTL": "0.5", "PYTHONUNBUFFERED": "1", **(env or {})})
        args = [sys.executable, "-m", "roomsvc", "toolkit", "proxy", "--room", room, "--listen", "127.0.0.1:0", "--upstream", upstream]
        for spec in specs:
            args += ["--header-secret", spec]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full, cwd=REPO)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if not m:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"proxy did not start: {line!r} {err}")
        self.url = m.group(1)

    def stop(self) -> str:
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=10)
        return err


async def put_secret(session: aiohttp.ClientSession, server: Server, token: str, secret_id: str, text: str, **extra) -> None:
    async with session.put(f"{server.url}/v1/rooms/{ROOM}/secrets/{secret_id}", json={"text": text, **extra},
                           headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()


async def resolve(session: aiohttp.ClientSession, server: Server, token: str, specs: list, **extra) -> tuple[int, dict]:
    r = await session.post(f"{server.url}/v1/rooms/{ROOM}/headers", json={"header_secrets": specs, **extra},
                           headers={"Authorization": f"Bearer {token}"})
    return r.status, {**(await r.json()), "_cache": r.headers.get("Cache-Control")}


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    return {
        "tool": server.token("github-tool", ROOM, api=("secrets",), role="tool"),
        "other": server.token("other-tool", ROOM, api=("secrets",), role="tool"),
        "admin": server.token("room-admin", ROOM, api=("secrets", "admin")),
    }


async def test_endpoint_and_cli_return_the_same_header_and_others_get_not_found(server: Server, tokens) -> None:
    async with aiohttp.ClientSession() as session:
        await put_secret(session, server, tokens["tool"], "github", "gho_first")
        await put_secret(session, server, tokens["tool"], "k2", "key-two", name="named-key")
        status, body = await resolve(session, server, tokens["tool"], ["Authorization:Bearer {github}", "X-Key:{named-key}"])
        assert status == 200 and body["_cache"] == "no-store"
        assert [(h["name"], h["value"]) for h in body["headers"]] == [("Authorization", "Bearer gho_first"), ("X-Key", "key-two")]

        cli = server.cli("toolkit", "headers", "--room", ROOM, "--header-secret", "Authorization:Bearer {github}",
                         "--header-secret", "X-Key:{named-key}", token=tokens["tool"])
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout) == {"Authorization": "Bearer gho_first", "X-Key": "key-two"}
        curl = server.cli("toolkit", "headers", "--room", ROOM, "--header-secret", "Authorization:Bearer {github}",
                          "--format", "curl", token=tokens["tool"])
        assert curl.stdout.strip() == b"-H 'Authorization: Bearer gho_first'"

        status, body = await resolve(session, server, tokens["other"], ["Authorization:Bearer {github}"])
        assert status == 404 and body["error"]["code"] == 1003 and "{github}" in body["error"]["message"]
        cli = server.cli("toolkit", "headers", "--room", ROOM, "--header-secret", "Authorization:Bearer {github}", token=tokens["other"])
        assert cli.returncode == 1 and b"not found" in cli.stderr and b"gho_first" not in cli.stderr

        # another identity's secret needs the admin grant
        status, body = await resolve(session, server, tokens["other"], ["A:{github}"], for_identity="github-tool")
        assert status == 403
        status, body = await resolve(session, server, tokens["admin"], ["A:{github}"], for_identity="github-tool")
        assert status == 200 and body["headers"][0]["value"] == "gho_first"


async def test_a_delegated_secret_resolves_for_its_delegate_when_it_names_the_owner(server: Server, tokens) -> None:
    person = server.token("person", ROOM, api=("secrets",))
    async with aiohttp.ClientSession() as session:
        await put_secret(session, server, person, "calendar", "cal-token", delegated_to="github-tool")
        status, body = await resolve(session, server, tokens["tool"], ["Authorization:Bearer {person/calendar}"])
        assert status == 200 and body["headers"][0]["value"] == "Bearer cal-token"
        # a plain {calendar} looks only at the tool's own secrets
        status, _ = await resolve(session, server, tokens["tool"], ["Authorization:Bearer {calendar}"])
        assert status == 404
        status, _ = await resolve(session, server, tokens["other"], ["Authorization:Bearer {calendar}"])
        assert status == 404
        # naming the owner does not help an identity it was not delegated to: it looks missing
        status, body = await resolve(session, server, tokens["other"], ["Authorization:Bearer {person/calendar}"])
        assert status == 404 and "cal-token" not in str(body)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("Authorization:Bearer {github}\r\nX-Evil: 1", "control characters"),
        ("Authorization:Bearer {github}\x00", "control characters"),
        ("Host:{github}", "cannot be injected"),
        ("Proxy-Authorization:{github}", "cannot be injected"),
        ("Authorization:Bearer {github.__class__}", "not a plain secret key"),
        ("Authorization:Bearer {github[0]}", "not a plain secret key"),
        ("Authorization:Bearer {nosuchsecret}", "{nosuchsecret} not found"),
    ],
)
async def test_hostile_specs_are_refused_before_any_request(server: Server, tokens, spec: str, fragment: str) -> None:
    recorder = await Recorder().start()
    try:
        async with aiohttp.ClientSession() as session:
            await put_secret(session, server, tokens["tool"], "github", "gho_first")
            status, body = await resolve(session, server, tokens["tool"], ["X-Ok:{github}", spec])
            assert status in (400, 404) and fragment in body["error"]["message"]
            assert "gho_first" not in json.dumps(body)
        # the proxy refuses to start with such a spec, and the upstream sees nothing
        # (a NUL cannot even travel in a command-line argument)
        if "\x00" not in spec:
            with pytest.raises(RuntimeError) as info:
                Proxy(server, tokens["tool"], recorder.url, [spec])
            assert fragment in str(info.value)
        assert recorder.seen == []
    finally:
        await recorder.stop()


async def test_a_stored_value_with_crlf_is_refused_at_render_time(server: Server, tokens) -> None:
    async with aiohttp.ClientSession() as session:
        await put_secret(session, server, tokens["tool"], "poisoned", "tok\r\nSet-Cookie: stolen=1")
        status, body = await resolve(session, server, tokens["tool"], ["Authorization:Bearer {poisoned}"])
        assert status == 400 and "{poisoned}" in body["error"]["message"] and "control characters" in body["error"]["message"]
        assert "Set-Cookie" not in json.dumps(body)


async def test_the_proxy_injects_strips_spoofed_copies_and_never_follows_redirects(server: Server, tokens) -> None:
    elsewhere = await Recorder().start()
    upstream = await Recorder(redirect_to=elsewhere.url).start()
    async with aiohttp.ClientSession() as session:
        await put_secret(session, server, tokens["tool"], "github", "gho_proxy")
    proxy = Proxy(server, tokens["tool"], upstream.url + "/api", ["Authorization:Bearer {github}"])
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{proxy.url}/v1/items?x=1", data=b"payload" * 1000,
                                    headers={"authorization": "Bearer spoofed", "X-Trace": "t1", "Connection": "X-Trace"}) as r:
                assert r.status == 200 and (await r.json()) == {"path": "/api/v1/items?x=1", "got": 7000}
            seen = upstream.seen[-1]
            assert seen["authorization"] == "Bearer gho_proxy"  # injected, the spoofed copy removed
            assert "x-trace" not in seen  # named in Connection: hop-by-hop
            assert seen[":path"] == "/api/v1/items?x=1"

            # a redirect to another host goes back to the toolkit; following it, the other
            # host never sees the credential
            async with session.get(f"{proxy.url}/redirect", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == elsewhere.url + "/landing"
            async with session.get(f"{proxy.url}/redirect") as r:
                assert r.status == 200
            assert elsewhere.seen and all("gho_proxy" not in json.dumps(s) for s in elsewhere.seen)
    finally:
        proxy.stop()
        await upstream.stop()
        await elsewhere.stop()


async def test_the_proxy_picks_up_a_rotated_secret(server: Server, tokens) -> None:
    upstream = await Recorder().start()
    async with aiohttp.ClientSession() as session:
        await put_secret(session, server, tokens["tool"], "rotating", "v1")
    proxy = Proxy(server, tokens["tool"], upstream.url, ["X-Api-Key:{rotating}"])
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(proxy.url + "/a") as r:
                assert r.status == 200
            assert upstream.seen[-1]["x-api-key"] == "v1"
            await put_secret(session, server, tokens["tool"], "rotating", "v2")

            async def rotated() -> bool:  # once proxy.cache_ttl (0.5 s here) has run out
                async with session.get(proxy.url + "/b") as r:
                    assert r.status == 200
                return bool(upstream.seen[-1]["x-api-key"] == "v2")

            await until(rotated, "the proxy sends the rotated value", poll=0.1)
    finally:
        proxy.stop()
        await upstream.stop()


def test_the_proxy_cli_refuses_a_loopback_upstream_in_production_mode(server: Server, tokens) -> None:
    result = server.cli("toolkit", "proxy", "--room", ROOM, "--listen", "127.0.0.1:0", "--upstream", "https://127.0.0.1:9/",
                        "--header-secret", "A:{github}", token=tokens["tool"], env={"ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "0"})
    assert result.returncode == 2 and b"loopback or private" in result.stderr  # a usage error: nothing was sent
