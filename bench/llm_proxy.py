"""Benchmark: what the LLM proxy adds to a call, against calling the upstream directly.

Starts the stand-in upstream of the tests (tests/support/llm_upstream.py) in a subprocess
of its own and a real roomsvc server (SQLite, development mode) pointed at it, stores the
provider keys as a project keys secret, then, in the same run:

* time to the first streamed chunk of an OpenAI chat completion stream (and of the whole
  stream), one call at a time: direct to the stand-in (baseline) vs through roomsvc; prints
  median and p90 and the added latency;
* CPU per call at a fixed concurrency, for streamed and plain calls: the roomsvc server's
  CPU time per proxied call (from /proc), next to the stand-in's own CPU per call (what it
  costs to produce the answer), measured over the same calls.

Not a test: it prints figures, it asserts nothing about speed.

    .venv/bin/python bench/llm_proxy.py [--calls 300] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.llm.conftest import llm_token  # noqa: E402
from tests.support.llm_upstream import StandIn  # noqa: E402
from tests.support.server import Server  # noqa: E402

OPENAI_KEY = "sk-bench-openai"
ANTHROPIC_KEY = "sk-bench-anthropic"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def serve_standin() -> None:
    """--standin: run the stand-in until stdin closes, printing its port first."""
    stand_in = await StandIn(OPENAI_KEY, ANTHROPIC_KEY).start()
    print(stand_in.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await stand_in.stop()


async def call(http: aiohttp.ClientSession, url: str, key: str, *, stream: bool) -> tuple[float, float]:
    """(seconds to the first chunk, seconds to the end)."""
    started = time.perf_counter()
    async with http.post(url, json={**BODY, "stream": stream}, headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 200, (r.status, await r.text())
        first = await r.content.readany()
        ttfc = time.perf_counter() - started
        assert first
        await r.read()
    return ttfc, time.perf_counter() - started


async def latency(http: aiohttp.ClientSession, url: str, key: str, calls: int) -> tuple[list[float], list[float]]:
    for _ in range(20):  # warm-up
        await call(http, url, key, stream=True)
    firsts, wholes = [], []
    for _ in range(calls):
        first, whole = await call(http, url, key, stream=True)
        firsts.append(first)
        wholes.append(whole)
    return firsts, wholes


async def cpu_per_call(http: aiohttp.ClientSession, url: str, key: str, calls: int, concurrency: int, *, stream: bool,
                       pids: dict[str, int]) -> dict[str, float]:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call(http, url, key, stream=stream)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {name: (cpu_seconds(pid) - before[name]) / calls * 1000 for name, pid in pids.items()}


def ms(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if q != 50 else statistics.median(values) * 1000


async def run(args: argparse.Namespace) -> None:
    standin = subprocess.Popen([sys.executable, __file__, "--standin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    assert standin.stdout is not None and standin.stdin is not None
    port = int(standin.stdout.readline())
    upstream = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", env={
            "ROOMSVC_LLM_OPENAI_BASE_URL": f"{upstream}/v1", "ROOMSVC_LLM_ANTHROPIC_BASE_URL": upstream,
            "ROOMSVC_LLM_REQUESTS_RATE": "0", "ROOMSVC_SERVER_ACCESS_LOG": "0",
        }).start()
        try:
            done = server.cli("secret", "keys", "create", "--id", "llm", "--data",
                              f"OPENAI_API_KEY={OPENAI_KEY} ANTHROPIC_API_KEY={ANTHROPIC_KEY}", token=server.operator_token())
            assert done.returncode == 0, done.stderr
            token = llm_token(server, "bench", {})
            assert server.proc is not None
            pids = {"roomsvc": server.proc.pid, "stand-in": standin.pid}
            direct = (f"{upstream}/v1/chat/completions", OPENAI_KEY)
            proxied = (f"{server.url}/v1/llm/openai/chat/completions", token)
            connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
            async with aiohttp.ClientSession(connector=connector) as http:
                print(f"latency, {args.calls} streamed calls one at a time:", file=sys.stderr)
                d_first, d_whole = await latency(http, *direct, args.calls)
                p_first, p_whole = await latency(http, *proxied, args.calls)
                print(f"cpu, {args.calls} calls at concurrency {args.concurrency}:", file=sys.stderr)
                cpu = {}
                for stream in (True, False):
                    label = "stream" if stream else "plain"
                    cpu[f"direct {label}"] = await cpu_per_call(http, *direct, args.calls, args.concurrency,
                                                                stream=stream, pids=pids)
                    cpu[f"proxied {label}"] = await cpu_per_call(http, *proxied, args.calls, args.concurrency,
                                                                 stream=stream, pids=pids)
        finally:
            server.stop()
            standin.stdin.close()
            standin.wait(10)
    figures = {
        "first chunk, direct: median / p90 ms": (ms(d_first, 50), ms(d_first, 90)),
        "first chunk, via roomsvc: median / p90 ms": (ms(p_first, 50), ms(p_first, 90)),
        "whole stream, direct: median / p90 ms": (ms(d_whole, 50), ms(d_whole, 90)),
        "whole stream, via roomsvc: median / p90 ms": (ms(p_whole, 50), ms(p_whole, 90)),
    }
    print(f"\nLLM proxy (roomsvc {server.url} -> stand-in {upstream}), {args.calls} calls")
    for label, (median, p90) in figures.items():
        print(f"  {label:<46} {median:7.2f} / {p90:7.2f}")
    added = ms(p_first, 50) - ms(d_first, 50)
    print(f"  added latency to first chunk (median)          {added:7.2f} ms "
          f"({ms(p_first, 50) / ms(d_first, 50):.2f}x direct)")
    for label in ("stream", "plain"):
        proxied_cpu = cpu[f"proxied {label}"]
        standin_cpu = cpu[f"direct {label}"]["stand-in"]
        print(f"  {label} calls: roomsvc CPU per proxied call {proxied_cpu['roomsvc']:.2f} ms; stand-in CPU per call "
              f"{standin_cpu:.2f} ms (direct); ratio {proxied_cpu['roomsvc'] / standin_cpu:.2f}x")
    print(json.dumps({"added_first_chunk_ms_median": round(added, 3), "cpu_ms": cpu}, indent=None), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--standin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(serve_standin() if args.standin else run(args))


if __name__ == "__main__":
    main()
