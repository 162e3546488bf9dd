"""Benchmark: the server's CPU cost of metrics and tracing, on and off.

Starts four real servers (SQLite, development mode) side by side:

* **off**: ``telemetry.metrics = false`` (only the six basic series) and no traces;
* **metrics**: the default, every series of docs/operations.md, no traces;
* **metrics + traces**: also ``OTEL_TRACES_EXPORTER=otlp`` to a local OTLP/HTTP sink that
  this script runs (it answers and discards), so spans are built, batched, encoded and sent;
* **traces 1 in 10**: the same, sampling one trace in ten (``OTEL_TRACES_SAMPLER``).

Each round sends the same workload to each server in turn (reads of a secret over HTTP,
``secrets.get`` and ``message.send`` over the native websocket), and reads the server
process's CPU time (user + system, /proc/<pid>/stat) before and after. Prints the CPU
time per 1000 requests (median of the rounds) and its ratio to **off** of the same run.

    .venv/bin/python bench/telemetry.py [--requests 1500] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.native_client import NativeClient  # noqa: E402
from tests.support.server import Server  # noqa: E402

ROOM = "bench"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


async def otlp_sink() -> tuple[web.AppRunner, str]:
    async def traces(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def drive(call: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> None:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def workload(server: Server, requests: int, concurrency: int) -> Callable[[], Awaitable[float]]:
    """Set up the secret and the sockets once; the returned function runs one round and
    answers the CPU seconds the server spent on it."""
    token = server.token("bench-a", ROOM, api=("secrets",))
    auth = {"Authorization": f"Bearer {token}"}
    session = aiohttp.ClientSession()
    r = await session.put(f"{server.url}/v1/rooms/{ROOM}/secrets/s1", json={"text": "v" * 40}, headers=auth)
    assert r.status == 200, await r.text()
    a = await NativeClient.connect(server.ws_url(ROOM), token)
    b = await NativeClient.connect(server.ws_url(ROOM), server.token("bench-b", ROOM, api=("secrets",)))

    async def http_get() -> None:
        async with session.get(f"{server.url}/v1/rooms/{ROOM}/secrets/s1", headers=auth) as resp:
            assert resp.status == 200
            await resp.read()

    async def ws_get() -> None:
        await a.request("secrets.get", {"id": "s1"})

    async def ws_message() -> None:
        await a.request("message.send", {"to": b.participant_id, "message_type": "m", "body": {}})

    async def one_round() -> float:
        assert server.proc is not None
        before = cpu_seconds(server.proc.pid)
        for call in (http_get, ws_get, ws_message):
            await drive(call, requests, concurrency)
        return cpu_seconds(server.proc.pid) - before

    async def close() -> None:
        await a.close()
        await b.close()
        await session.close()

    one_round.close = close  # type: ignore[attr-defined]
    return one_round


async def run(args: argparse.Namespace) -> None:
    sink, endpoint = await otlp_sink()
    quiet = {"ROOMSVC_SERVER_ACCESS_LOG": "0", "ROOMSVC_LIMITS_MESSAGES_BURST": "10000000"}
    configs = {
        "off": {**quiet, "ROOMSVC_TELEMETRY_METRICS": "0"},
        "metrics": quiet,
        "metrics + traces": {**quiet, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        "traces 1 in 10": {**quiet, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                           "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        servers = {name: Server(Path(tmp) / name.replace(" ", "-"), env=env).start() for name, env in configs.items()}
        try:
            rounds = {name: await workload(srv, args.requests, args.concurrency) for name, srv in servers.items()}
            for one in rounds.values():  # warm-up
                await one()
            spent: dict[str, list[float]] = {name: [] for name in configs}
            for i in range(args.rounds):
                for name, one in rounds.items():  # interleaved, so drift hits each alike
                    spent[name].append(await one())
                print(f"\r  round {i + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
            for one in rounds.values():
                await one.close()  # type: ignore[attr-defined]
        finally:
            for srv in servers.values():
                srv.stop()
            await sink.cleanup()
    total = 3 * args.requests
    print(f"server CPU per 1000 requests (median of {args.rounds} rounds of {total} requests: "
          f"HTTP GET secret, ws secrets.get, ws message.send; concurrency {args.concurrency})")
    base = statistics.median(spent["off"]) / total * 1000
    for name in configs:
        per = statistics.median(spent[name]) / total * 1000
        print(f"  {name:<18} {per * 1000:8.1f} ms   ratio to off {per / base:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="requests per kind per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
