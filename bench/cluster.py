"""Benchmark: message delivery between two roomsvc nodes over Redis, against delivery on one node.

Starts two real roomsvc servers (cluster on, one PostgreSQL database created for the run on
ROOMSVC_TEST_POSTGRES, a Redis key prefix of the run's own on ROOMSVC_TEST_REDIS), with a
native sender on node A and two receivers: one on A (single-node delivery) and one on B
(cross-node delivery, through Redis pub/sub). Then:

* latency: ``--messages`` messages sent one at a time to each receiver; p50/p99 of the time
  from the send to the receiver reading it (sender and receivers share one clock);
* throughput: ``--messages`` broadcasts sent with up to ``--window`` unanswered at once;
  messages a second until each receiver has read the last one.

    .venv/bin/python bench/cluster.py [--messages 2000] [--window 16]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cluster.nodes import cluster_env, drop_keys, new_prefix, redis_available  # noqa: E402
from tests.storage.test_postgres_nodes import copy_keys  # noqa: E402
from tests.support import postgres  # noqa: E402
from tests.support.native_client import NativeClient  # noqa: E402
from tests.support.server import Server  # noqa: E402

ROOM = "bench-room"


async def latency(sender: NativeClient, receiver: NativeClient, count: int) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        await sender.request("message.send", {"to": receiver.participant_id, "message_type": "lat", "body": i})
        while True:
            frame = await receiver.next_event("message", timeout=10)
            if frame["data"]["message_type"] == "lat" and frame["data"]["body"] == i:
                break
        out.append((time.perf_counter() - started) * 1000)
    return out


async def throughput(sender: NativeClient, receivers: list[NativeClient], count: int, window: int) -> list[float]:
    gate = asyncio.Semaphore(window)

    async def send(i: int) -> None:
        async with gate:
            await sender.request("message.broadcast", {"message_type": "tp", "body": i})

    async def drain(receiver: NativeClient) -> float:
        seen = 0
        while seen < count:
            frame = await receiver.next_event("message", timeout=30)
            if frame["data"]["message_type"] == "tp":
                seen += 1
        return time.perf_counter()

    started = time.perf_counter()
    drains = [asyncio.create_task(drain(r)) for r in receivers]
    await asyncio.gather(*(send(i) for i in range(count)))
    ends = await asyncio.gather(*drains)
    return [count / (end - started) for end in ends]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]  # type: ignore[index]


async def run(a: Server, b: Server, messages: int, window: int) -> None:
    sender = await NativeClient.connect(a.ws_url(ROOM), a.token("sender", ROOM))
    local = await NativeClient.connect(a.ws_url(ROOM), a.token("local", ROOM))
    remote = await NativeClient.connect(b.ws_url(ROOM), b.token("remote", ROOM))
    try:
        while remote.participant_id not in {p["id"] for p in (await sender.request("participants.list"))["participants"]}:
            await asyncio.sleep(0.05)
        await latency(sender, local, 50)  # warm up both paths
        await latency(sender, remote, 50)
        lat_local = await latency(sender, local, messages)
        lat_remote = await latency(sender, remote, messages)
        tp_local, tp_remote = await throughput(sender, [local, remote], messages, window)
    finally:
        for c in (sender, local, remote):
            await c.close()
    print(f"{messages} messages each; sender on node A")
    print(f"{'delivery':<22}{'p50 ms':>9}{'p99 ms':>9}{'msgs/s':>10}")
    print(f"{'one node (A -> A)':<22}{pct(lat_local, 50):>9.2f}{pct(lat_local, 99):>9.2f}{tp_local:>10.0f}")
    print(f"{'cross-node (A -> B)':<22}{pct(lat_remote, 50):>9.2f}{pct(lat_remote, 99):>9.2f}{tp_remote:>10.0f}")
    print(f"cross-node / one node: p50 x{pct(lat_remote, 50) / pct(lat_local, 50):.2f}, "
          f"throughput x{tp_remote / tp_local:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=16)
    args = parser.parse_args()
    if not postgres.available() or not redis_available():
        sys.exit("error [unavailable]: needs PostgreSQL (ROOMSVC_TEST_POSTGRES) and Redis (ROOMSVC_TEST_REDIS)")
    prefix = new_prefix()
    base = Path(tempfile.mkdtemp(prefix="roomsvc-bench-cluster-"))
    quiet = {"ROOMSVC_SERVER_ACCESS_LOG": "0", "ROOMSVC_LIMITS_MESSAGES_RATE": "0"}
    nodes: list[Server] = []
    try:
        with postgres.database("roomsvc_bench_cluster") as dsn:
            env = {**postgres.postgres_env(dsn), **quiet}
            (base / "a").mkdir()
            nodes.append(Server(base / "a" / "data", env={**env, **cluster_env(prefix, "bench-a")}).start())
            nodes.append(Server(copy_keys(nodes[0].data_dir, base / "b"), env={**env, **cluster_env(prefix, "bench-b")}).start())
            try:
                asyncio.run(run(nodes[0], nodes[1], args.messages, args.window))
            finally:
                for node in nodes:
                    node.stop()
    finally:
        drop_keys(prefix)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
