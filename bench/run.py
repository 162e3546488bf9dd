"""``make bench``: roomsvc against a bare aiohttp server and python-socketio, same run.

Starts the three servers on free 127.0.0.1 ports (bench/servers.py), drives them with the
same load generators in separate processes (bench/wsload.py for websockets, Debian's
``wrk`` for HTTP), reads server CPU and memory from /proc (bench/procstat.py), runs
``--rounds`` rounds (servers in a rotating order) and reports medians: a table on stdout,
``bench/results/latest.json`` and ``bench/results/latest.png`` (ratios to bare).

    .venv/bin/python bench/run.py [--quick] [--rounds 3] [--duration 2] [--only 1,3]

Ratios within one run are what count: absolute figures move with whatever else the
machine is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from bench import oauth_flow, procstat, report, servers, wrk  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOM = "bench"
SECRET = "gho_" + "x" * 36
VALUE_200 = "v" * 200
KINDS = report.KINDS


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1e6  # ns -> ms


# -- the websocket load generator, in separate processes -------------------------------------


def generate(pid: int, protocol: str, mode: str, clients: list[dict[str, Any]], *, procs: int = 2,
             on_ready: Callable[[], None] | None = None, settle: Callable[[], None] | None = None,
             **spec: Any) -> tuple[list[dict[str, Any]], float, float]:
    """Run wsload processes over ``clients``; (their results, server CPU seconds, wall seconds)
    from ``go`` to the last result."""
    chunks = [c for c in (clients[i::procs] for i in range(procs)) if c]
    gens = [subprocess.Popen([sys.executable, str(BENCH / "wsload.py")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True) for _ in chunks]
    try:
        for g, chunk in zip(gens, chunks):
            g.stdin.write(json.dumps({"protocol": protocol, "mode": mode, "clients": chunk, **spec}) + "\n")  # type: ignore[union-attr]
            g.stdin.flush()  # type: ignore[union-attr]
        for g in gens:
            line = g.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"load generator failed ({protocol} {mode}) before it was ready")
        if on_ready:
            on_ready()
        cpu0, t0 = procstat.cpu_seconds(pid), time.monotonic()
        for g in gens:
            g.stdin.write("go\n")  # type: ignore[union-attr]
            g.stdin.flush()  # type: ignore[union-attr]
        if mode == "join":
            for g in gens:
                g.stdout.readline()  # type: ignore[union-attr]
            if settle:
                settle()
            for g in gens:
                g.stdin.write("go\n")  # type: ignore[union-attr]
                g.stdin.flush()  # type: ignore[union-attr]
        results = []
        for g in gens:
            line = g.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"load generator failed ({protocol} {mode})")
            results.append(json.loads(line))
        cpu1, t1 = procstat.cpu_seconds(pid), time.monotonic()
        for g in gens:
            g.wait(30)
        return results, cpu1 - cpu0, t1 - t0
    finally:
        for g in gens:
            if g.poll() is None:
                g.kill()
                g.wait()


def protocol_of(kind: str) -> str:
    return "socketio" if kind == "socketio" else "native"


def clients_for(server: Any, rooms: list[tuple[str, int, float]], api: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """(room, members, rate of each member) -> client specs with a token each."""
    out = []
    for room, members, rate in rooms:
        for i in range(members):
            out.append({"url": server.ws_url(room), "token": server.token(f"{room}-p{i}", room, api=api),
                        "rate": rate})
    return out


# -- scenarios ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.servers: dict[str, Any] = {}
        self.peer: oauth_flow.OAuthPeer | None = None
        self.oauth_note = ""
        self.tool_token = ""
        self.oauth_ref = ""

    # life cycle

    def start(self) -> None:
        ok, reason = oauth_flow.ready()
        env: dict[str, str] = {}
        if ok:
            self.peer = oauth_flow.OAuthPeer(self.tmp / "oidc")
            env = self.peer.env
        else:
            self.oauth_note = f"not measured: {reason}"
        for kind in KINDS:
            log(f"starting {kind}")
            self.servers[kind] = servers.start(kind, self.tmp / kind, env if kind == "roomsvc" else None)
        rs = self.servers["roomsvc"]
        if self.peer is not None:
            self.peer.start(rs.url)
        self.tool_token = rs.token("bench-tool", ROOM, api=("secrets",), role="tool")
        asyncio.run(self._prepare())

    async def _prepare(self) -> None:
        rs = self.servers["roomsvc"]
        auth = {"Authorization": f"Bearer {self.tool_token}"}
        async with aiohttp.ClientSession() as s:
            async with s.put(f"{rs.url}/v1/rooms/{ROOM}/secrets/github", json={"text": SECRET}, headers=auth) as r:
                assert r.status == 200, await r.text()
        if self.peer is not None:
            log("storing an OAuth credential through the real provider")
            _, self.oauth_ref = await oauth_flow.through_roomsvc(rs, "bench-tool", "bench-person", ROOM)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self.peer is not None:
            self.peer.stop()

    # 1, 2: deliveries

    def deliveries(self, kind: str, rooms: list[tuple[str, int, float]]) -> dict[str, float]:
        server = self.servers[kind]
        clients = clients_for(server, rooms)
        results, cpu, _ = generate(server.pid, protocol_of(kind), "send", clients, duration=self.args.duration,
                                   drain=1.0)
        received = sum(r["received"] for r in results)
        closed = sum(len(r["closed"]) for r in results)
        lat = [v for r in results for v in r["latencies"]]
        if closed:
            log(f"    {kind}: {closed} connections closed during the run")
        return {"rate": received / self.args.duration, "cpu_us": cpu / max(received, 1) * 1e6,
                "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}

    def s1_fanout(self, kind: str) -> dict[str, float]:
        clients = clients_for(self.servers[kind], [("fan", 51, 0.0)])
        clients[0]["rate"] = self.args.fanout_rate
        server = self.servers[kind]
        results, cpu, _ = generate(server.pid, protocol_of(kind), "send", clients, duration=self.args.duration, drain=1.0)
        received = sum(r["received"] for r in results)
        lat = [v for r in results for v in r["latencies"]]
        return {"rate": received / self.args.duration, "cpu_us": cpu / max(received, 1) * 1e6,
                "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}

    def s1_broadcast(self, kind: str) -> dict[str, float]:
        clients = clients_for(self.servers[kind], [("bc", 20, 0.0)])
        for c in clients[:10]:
            c["rate"] = self.args.broadcast_rate
        server = self.servers[kind]
        results, cpu, _ = generate(server.pid, protocol_of(kind), "send", clients, duration=self.args.duration, drain=1.0)
        received = sum(r["received"] for r in results)
        lat = [v for r in results for v in r["latencies"]]
        return {"rate": received / self.args.duration, "cpu_us": cpu / max(received, 1) * 1e6,
                "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}

    def s2_rooms(self, kind: str) -> dict[str, float]:
        return self.deliveries(kind, [(f"r{i}", 5, self.args.rooms_rate) for i in range(100)])

    # 3: header resolution

    def s3_headers(self, kind: str) -> dict[str, float]:
        server = self.servers[kind]
        token = self.tool_token if kind == "roomsvc" else "bench"
        out: dict[str, float] = {}
        specs = {"plain": "Authorization:Bearer {github}"}
        if kind == "roomsvc" and self.peer is not None:
            specs["oauth"] = "Authorization:Bearer {%s}" % self.oauth_ref
        for label, spec in specs.items():
            body: dict[str, Any] = {"header_secrets": [spec]}
            if label == "oauth":  # an OAuth credential goes only to its allowed hosts
                assert self.peer is not None
                body["destination"] = f"{self.peer.issuer}/me"
            cpu0 = procstat.cpu_seconds(server.pid)
            r = wrk.run(f"{server.url}/v1/rooms/{ROOM}/headers", method="POST", body=body,
                        headers={"Authorization": f"Bearer {token}"}, connections=32, duration=self.args.duration)
            cpu = procstat.cpu_seconds(server.pid) - cpu0
            out[f"http_{label}_rps"] = r["rps"]
            out[f"http_{label}_p99"] = r["p99_ms"]
            out[f"http_{label}_cpu_us"] = cpu / r["requests"] * 1e6
            url = server.ws_url(ROOM)
            clients = [{"url": url, "token": token} for _ in range(32)]
            results, cpu, wall = generate(server.pid, "native", "requests", clients, procs=1, duration=self.args.duration,
                                          kind="headers.resolve", data=body)
            n = sum(x["requests"] for x in results)
            if any(x["errors"] for x in results):
                raise RuntimeError(f"{kind} headers.resolve answered errors")
            lat = [v for x in results for v in x["latencies"]]
            out[f"ws_{label}_rps"] = n / self.args.duration
            out[f"ws_{label}_p99"] = pct(lat, 0.99)
            out[f"ws_{label}_cpu_us"] = cpu / max(n, 1) * 1e6
        if kind == "bare":  # the bare handler is the baseline of both kinds of secret
            for k in list(out):
                out[k.replace("plain", "oauth")] = out[k]
        return out

    # 4: secret set / get

    def s4_secrets(self, kind: str) -> dict[str, float]:
        server = self.servers[kind]
        if kind == "roomsvc":
            url, headers = f"{server.url}/v1/rooms/{ROOM}/secrets/s4", {"Authorization": f"Bearer {self.tool_token}"}
        else:
            url, headers = f"{server.url}/raw/secrets/s4", {}
        # a fresh id per write (concurrent writes of one id are refused as conflicts by roomsvc)
        put = wrk.run(url, method="PUT", body={"text": VALUE_200}, headers=headers, connections=32,
                      duration=self.args.duration, numbered=True)
        get = wrk.run(url + "-0", headers=headers, connections=32, duration=self.args.duration)
        return {"set_rps": put["rps"], "get_rps": get["rps"], "set_p99": put["p99_ms"], "get_p99": get["p99_ms"]}

    # 5: memory per idle connection (fresh servers)

    def s5_memory(self, kind: str) -> dict[str, float]:
        n = self.args.connections
        server = servers.start(kind, self.tmp / f"mem-{kind}-{time.monotonic_ns()}",
                               self.peer.env if (kind == "roomsvc" and self.peer) else None)
        try:
            time.sleep(0.5)
            before = procstat.rss_kib(server.pid)
            clients = clients_for(server, [(f"m{i}", 10, 0.0) for i in range(n // 10)])
            seen: dict[str, int] = {}

            def held() -> None:
                time.sleep(1.5)
                seen["after"] = procstat.rss_kib(server.pid)

            results, _, _ = generate(server.pid, protocol_of(kind), "idle", clients, on_ready=held)
            connected = sum(r["connected"] for r in results)
            return {"kib_per_conn": (seen["after"] - before) / max(connected, 1), "connected": connected}
        finally:
            server.stop()

    # 6: 2,000 joins into one room (fresh servers)

    def s6_join(self, kind: str) -> dict[str, Any]:
        n = self.args.joiners
        server = servers.start(kind, self.tmp / f"join-{kind}-{time.monotonic_ns()}",
                               self.peer.env if (kind == "roomsvc" and self.peer) else None)
        try:
            clients = clients_for(server, [("crowd", n, 0.0)])

            def settle() -> None:
                """Until the server has been idle for a second (or ``--join-settle`` s)."""
                deadline = time.monotonic() + self.args.join_settle
                last = procstat.cpu_seconds(server.pid)
                while time.monotonic() < deadline:
                    time.sleep(1.0)
                    now = procstat.cpu_seconds(server.pid)
                    if now - last < 0.05:
                        return
                    last = now

            with profiled(self.args.profile if kind == "roomsvc" else None, lambda: server.pid, "join"):
                results, cpu, wall = generate(server.pid, protocol_of(kind), "join", clients,
                                              spread=self.args.join_spread, settle=settle, deadline=self.args.join_deadline)
            views = [v for r in results for v in r["views"]]
            ids = [v[0] for v in views]
            total = sum(id_crc(i) for i in ids) & 0xFFFFFFFFFFFF
            right = sum(1 for me, size, digest in views
                        if size == len(ids) - 1 and digest == (total - id_crc(me)) & 0xFFFFFFFFFFFF)
            closed = sum(len(r["closed"]) for r in results)
            failed = sum(r["failed"] for r in results)
            for r in results:
                for reason, count in r["reasons"].items():
                    log(f"    {kind}: {count} joins failed: {reason}")
                codes = r["closed"]
                if codes:
                    log(f"    {kind}: closed by the server with codes {sorted(set(map(str, codes)))}")
            return {"cpu_s": cpu, "closed": closed + failed, "right": right, "joined": len(ids), "wall_s": wall}
        finally:
            server.stop()

    # 7: OAuth flow overhead (roomsvc only; the baseline is the provider itself)

    def s7_oauth(self) -> dict[str, float]:
        assert self.peer is not None
        return asyncio.run(oauth_flow.overhead(self.servers["roomsvc"], self.peer.issuer, self.args.flows, ROOM,
                                               lambda t: log(f"    {t}")))


def id_crc(pid: str) -> int:
    """The participant id's digest, as bench/wsload.py sums them into a view's digest."""
    return zlib.crc32(pid.encode())


# -- rows of the table ---------------------------------------------------------------------------


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else None


def row(scenario: str, metric: str, unit: str, per_kind: dict[str, list[float]], *, goal: str = "",
        goal_ratio: float | None = None, lower_better: bool = True, check: Callable[[dict], bool] | None = None,
        ratio: bool = True) -> dict[str, Any]:
    values = {k: med(v) for k, v in per_kind.items()}
    r: dict[str, Any] = {"scenario": scenario, "metric": metric, "unit": unit, "values": values, "goal": goal,
                         "goal_ratio": goal_ratio, "rounds": per_kind}
    if ratio and values.get("bare") and values.get("roomsvc") is not None:
        r["ratio"] = values["roomsvc"] / values["bare"]
        if values.get("socketio") is not None:
            r["sio_ratio"] = values["socketio"] / values["bare"]
    if goal_ratio is not None and r.get("ratio") is not None:
        r["met"] = r["ratio"] <= goal_ratio if lower_better else r["ratio"] >= goal_ratio
    if check is not None:
        r["met"] = check(values)
    return r


def _delivery_goal(values: dict[str, float | None]) -> bool:
    """Both halves of the delivery goal: at most 1.5x bare and at most a third of python-socketio
    (when python-socketio was measured in this run)."""
    bare, sio, ours = values.get("bare"), values.get("socketio"), values.get("roomsvc")
    if bare is None or ours is None:
        return False
    return ours <= 1.5 * bare and (sio is None or ours <= sio / 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, short runs, smaller crowds (about a minute)")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    parser.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", "2")),
                        help="seconds of load per measurement (wrk takes whole seconds)")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="scenarios to run, e.g. 1,3")
    parser.add_argument("--fanout-rate", type=float, default=200.0, help="messages/s of the fan-out sender")
    parser.add_argument("--broadcast-rate", type=float, default=20.0, help="messages/s of each broadcast sender")
    parser.add_argument("--rooms-rate", type=float, default=2.0, help="messages/s of each member of the 100 rooms")
    parser.add_argument("--connections", type=int, default=2000, help="idle connections of scenario 5")
    parser.add_argument("--joiners", type=int, default=2000, help="participants joining in scenario 6")
    parser.add_argument("--join-spread", type=float, default=3.0, help="seconds over which they join")
    parser.add_argument("--join-settle", type=float, default=6.0, help="at most this long for presence to settle")
    parser.add_argument("--join-deadline", type=float, default=12.0,
                        help="seconds after the join window by which every participant must be in")
    parser.add_argument("--flows", type=int, default=7, help="OAuth flows of each kind in scenario 7")
    parser.add_argument("--servers", default=",".join(KINDS), help="which of bare,socketio,roomsvc to measure")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record roomsvc with py-spy during scenarios 1-4 (first round) and 6 into this directory")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.flows = 1, 1.0, 3
        args.connections, args.joiners = min(args.connections, 1000), min(args.joiners, 1000)
    only = {int(x) for x in args.only.split(",") if x.strip()}
    wanted = tuple(k for k in KINDS if k in args.servers.split(","))
    if not wrk.available():
        raise SystemExit("error [missing_tool]: wrk is not installed: run scripts/setup-system (Debian: apt-get install wrk)")
    started = time.monotonic()
    collected: dict[str, dict[str, dict[str, list[float]]]] = {}

    def keep(name: str, kind: str, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            collected.setdefault(name, {}).setdefault(key, {}).setdefault(kind, []).append(value)

    with tempfile.TemporaryDirectory(prefix="roomsvc-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            bench.start()
            steps: list[tuple[int, str, Callable[[str], dict[str, Any]], tuple[str, ...]]] = [
                (1, "fanout", bench.s1_fanout, KINDS), (1, "broadcast", bench.s1_broadcast, KINDS),
                (2, "rooms", bench.s2_rooms, KINDS), (3, "headers", bench.s3_headers, ("bare", "roomsvc")),
                (4, "secrets", bench.s4_secrets, ("bare", "roomsvc")),
            ]
            steps = [s for s in steps if s[0] in only]
            for rnd in range(args.rounds):
                for number, name, fn, kinds in steps:
                    kinds = tuple(k for k in kinds if k in wanted)
                    if not kinds:
                        continue
                    order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
                    for kind in order:
                        log(f"[{time.monotonic() - started:5.0f}s] round {rnd + 1}/{args.rounds} scenario {number} "
                            f"{name} on {kind}")
                        with profiled(args.profile if kind == "roomsvc" and rnd == 0 else None,
                                      lambda: bench.servers["roomsvc"].pid, name):
                            metrics = fn(kind)
                        keep(name, kind, metrics)
                        log("    " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
            for number, name, fn in ((5, "memory", bench.s5_memory), (6, "join", bench.s6_join)):
                if number in only:
                    for kind in wanted:
                        log(f"[{time.monotonic() - started:5.0f}s] scenario {number} {name} on a fresh {kind}")
                        metrics = fn(kind)
                        keep(name, kind, metrics)
                        log("    " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            if 7 in only and bench.peer is not None:
                log(f"[{time.monotonic() - started:5.0f}s] scenario 7 OAuth flows")
                keep("oauth", "roomsvc", bench.s7_oauth())
        finally:
            bench.stop()
    rows = build_rows(collected, bench.oauth_note, only)
    print()
    print(report.table(rows))
    machine = procstat.machine()
    document = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                "seconds": round(time.monotonic() - started, 1), "rows": rows}
    report.write_json(args.out / "latest.json", document)
    drawn = report.chart(rows, args.out / "latest.png",
                         f"roomsvc vs bare aiohttp and python-socketio, {machine['cores']} cores, medians of {args.rounds}")
    print(f"\nwrote {args.out / 'latest.json'}" + (f" and {args.out / 'latest.png'}" if drawn else " (no chart: matplotlib missing or no ratio measured)"))
    print(f"took {time.monotonic() - started:.0f} s; ratios within this run are what count")


@contextlib.contextmanager
def profiled(directory: Path | None, pid_of: Callable[[], int], name: str) -> Iterator[None]:
    """py-spy (the bench extra) sampling roomsvc while the block runs: an SVG flame graph and
    the collapsed stacks (text) of the scenario in ``directory``."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    pid = str(pid_of())
    spy = Path(sys.executable).parent / "py-spy"
    procs = [subprocess.Popen([str(spy), "record", "--pid", pid, "--rate", "200", "--format", fmt, "-o",
                               str(directory / f"{name}.{ext}"), "--nonblocking"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for fmt, ext in (("flamegraph", "svg"), ("raw", "txt"))]
    time.sleep(0.5)
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(30)


def build_rows(c: dict[str, Any], oauth_note: str, only: set[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, label in (("fanout", "1 fan-out 1→50"), ("broadcast", "1 broadcast 10×10"), ("rooms", "2 100 rooms of 5")):
        if name not in c:
            continue
        m = c[name]
        rows.append(row(label, "deliveries/s", "/s", m["rate"], lower_better=False))
        rows.append(row(label, "server CPU per delivery", "µs", m["cpu_us"], goal="≤ 1.5× bare, ≤ ⅓ socketio" if name != "rooms" else "",
                        goal_ratio=1.5 if name != "rooms" else None,
                        check=_delivery_goal if name != "rooms" else None))
        rows.append(row(label, "p50 one-way latency", "ms", m["p50"]))
        rows.append(row(label, "p99 one-way latency", "ms", m["p99"]))
    if "headers" in c:
        m = c["headers"]
        for transport in ("http", "ws"):
            for secret in ("plain", "oauth"):
                label = f"3 headers {transport} {secret}"
                if f"{transport}_{secret}_rps" not in m or "roomsvc" not in m[f"{transport}_{secret}_rps"]:
                    rows.append({"scenario": label, "metric": "requests/s", "unit": "", "values": {"roomsvc": oauth_note or "not measured"}})
                    continue
                rows.append(row(label, "requests/s (32 conn.)", "req/s", m[f"{transport}_{secret}_rps"], goal="≥ 0.4× bare",
                                goal_ratio=0.4, lower_better=False))
                rows.append(row(label, "p99 latency", "ms", m[f"{transport}_{secret}_p99"], goal="< 10 ms",
                                check=lambda v: v.get("roomsvc") is not None and v["roomsvc"] < 10))
                rows.append(row(label, "server CPU per request", "µs", m[f"{transport}_{secret}_cpu_us"]))
    if "secrets" in c:
        m = c["secrets"]
        rows.append(row("4 secret set (vs raw aiosqlite)", "requests/s (32 conn.)", "req/s", m["set_rps"], goal="≥ 0.5× raw",
                        goal_ratio=0.5, lower_better=False))
        rows.append(row("4 secret get (vs raw aiosqlite)", "requests/s (32 conn.)", "req/s", m["get_rps"], goal="≥ 0.5× raw",
                        goal_ratio=0.5, lower_better=False))
    if "memory" in c:
        rows.append(row("5 idle connections", "memory per connection", "KiB", c["memory"]["kib_per_conn"],
                        goal="≤ 1.5× bare", goal_ratio=1.5))
    if "join" in c:
        m = c["join"]
        rows.append(row("6 joins into one room", "total server CPU", "s", m["cpu_s"]))
        rows.append(row("6 joins into one room", "closed, refused or not in by the deadline", "", m["closed"], ratio=False,
                        goal="0",
                        check=lambda v: v.get("roomsvc") == 0))
        rows.append(row("6 joins into one room", "participants whose view is right", "", m["right"], ratio=False,
                        goal="all", check=lambda v, m=m: v.get("roomsvc") == med(m["joined"]["roomsvc"])))
    if "oauth" in c:
        m = c["oauth"]
        rows.append({"scenario": "7 OAuth flow (median)", "metric": "through roomsvc / direct", "unit": "ms",
                     "values": {"bare": med(m["direct_ms"]["roomsvc"]), "roomsvc": med(m["roomsvc_ms"]["roomsvc"])},
                     "goal": "overhead < 5 ms"})
        over = med(m["overhead_ms"]["roomsvc"])
        rows.append({"scenario": "7 OAuth flow (median)", "metric": "overhead (roomsvc − direct)", "unit": "ms",
                     "values": {"roomsvc": over}, "goal": "< 5 ms", "met": over is not None and over < 5})
    elif 7 in only:
        rows.append({"scenario": "7 OAuth flow", "metric": "overhead", "unit": "", "values": {"roomsvc": oauth_note}})
    return rows


if __name__ == "__main__":
    main()
