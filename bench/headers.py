"""Benchmark: headers resolved per second for a stored, unexpired credential.

Starts a real server (SQLite, development mode) in a temporary directory, stores a
credential, then measures for a fixed number of requests at a fixed concurrency:

* baseline: ``GET /v1/rooms/{room}/secrets/{id}`` (read one secret over HTTP) and ``ping``
  over the native websocket, measured in the same run;
* ``POST /v1/rooms/{room}/headers`` with one ``Authorization:Bearer {id}`` spec;
* ``headers.resolve`` over the native websocket.

Prints requests per second and the ratio to the baseline of the same transport. With
``--oauth`` it also obtains a real OAuth credential from the test provider
(tests/peers/oidc, via ``scripts/setup-peers``) and measures ``POST /headers`` for that
stored, unexpired credential (``Authorization:Bearer {oidc}``).

    .venv/bin/python bench/headers.py [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.native_client import NativeClient  # noqa: E402
from tests.support.server import Server  # noqa: E402

ROOM = "bench"


async def measure(label: str, call, requests: int, concurrency: int) -> float:
    issued = finished = 0
    bar_every = max(1, requests // 20)

    async def worker() -> None:
        nonlocal issued, finished
        while issued < requests:
            issued += 1
            await call()
            finished += 1
            if finished % bar_every == 0:
                print(f"\r  {label}: {finished}/{requests}", end="", file=sys.stderr, flush=True)

    for _ in range(min(50, requests)):  # warm-up
        await call()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    print(f"\r  {label}: done{' ' * 20}", file=sys.stderr)
    return requests / elapsed


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", env={"ROOMSVC_SERVER_ACCESS_LOG": "0"}).start()
        try:
            token = server.token("bench-tool", ROOM, api=("secrets",), role="tool")
            auth = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as session:
                r = await session.put(f"{server.url}/v1/rooms/{ROOM}/secrets/github", json={"text": "gho_" + "x" * 36}, headers=auth)
                assert r.status == 200, await r.text()

                async def get_secret() -> None:
                    async with session.get(f"{server.url}/v1/rooms/{ROOM}/secrets/github", headers=auth) as r:
                        assert r.status == 200
                        await r.read()

                async def post_headers() -> None:
                    async with session.post(f"{server.url}/v1/rooms/{ROOM}/headers", headers=auth,
                                            json={"header_secrets": ["Authorization:Bearer {github}"]}) as r:
                        assert r.status == 200
                        await r.read()

                client = await NativeClient.connect(server.ws_url(ROOM), token)
                try:
                    async def ws_ping() -> None:
                        await client.request("ping")

                    async def ws_headers() -> None:
                        await client.request("headers.resolve", {"header_secrets": ["Authorization:Bearer {github}"]})

                    n, c = args.requests, args.concurrency
                    results = {
                        "http GET secret (baseline)": await measure("http baseline", get_secret, n, c),
                        "http POST headers": await measure("http headers", post_headers, n, c),
                        "ws ping (baseline)": await measure("ws baseline", ws_ping, n, c),
                        "ws headers.resolve": await measure("ws headers", ws_headers, n, c),
                    }
                finally:
                    await client.close()
        finally:
            server.stop()
        if args.oauth:
            results["http POST headers (OAuth)"] = await oauth_rate(Path(tmp), args)
    print(f"requests={args.requests} concurrency={args.concurrency} (one process, SQLite, audit on every use)")
    for name, rate in results.items():
        print(f"  {name:<30} {rate:8.0f} /s")
    print(f"  ratio http headers / http GET secret: {results['http POST headers'] / results['http GET secret (baseline)']:.2f}")
    print(f"  ratio ws headers.resolve / ws ping:   {results['ws headers.resolve'] / results['ws ping (baseline)']:.2f}")
    if "http POST headers (OAuth)" in results:
        print(f"  ratio http headers (OAuth) / http GET secret: "
              f"{results['http POST headers (OAuth)'] / results['http GET secret (baseline)']:.2f}")


async def oauth_rate(tmp: Path, args: argparse.Namespace) -> float:
    """Consent once at the real test provider, then resolve the stored credential."""
    from tests.oauth.conftest import Provider, free_port, write_connectors
    from tests.oauth.flows import run_flow

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    write_connectors(tmp / "connectors", issuer)
    server = Server(tmp / "oauth-data", env={
        "ROOMSVC_SERVER_ACCESS_LOG": "0", "ROOMSVC_OAUTH_CONNECTORS_DIR": str(tmp / "connectors"),
        "OIDC_TEST_CLIENT_SECRET": "roomsvc-web-secret",
    }).start()
    provider = Provider(port, [f"{server.url}/oauth/callback"], tmp / "provider.log", ACCESS_TOKEN_TTL="3600")
    try:
        token = server.token("bench-tool", ROOM, api=("secrets",), role="tool")
        tool = await NativeClient.connect(server.ws_url(ROOM), token)
        person = await NativeClient.connect(server.ws_url(ROOM), server.token("person", ROOM, api=("secrets",)))
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                await run_flow(browser, tool, person, "person", delegate_to="bench-tool")
        finally:
            await tool.close()
            await person.close()
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session:
            async def post_headers() -> None:
                async with session.post(f"{server.url}/v1/rooms/{ROOM}/headers", headers=auth,
                                        json={"header_secrets": ["Authorization:Bearer {oidc}"]}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            return await measure("http headers (OAuth)", post_headers, args.requests, args.concurrency)
    finally:
        provider.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--oauth", action="store_true", help="also measure a stored OAuth credential (needs node)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
