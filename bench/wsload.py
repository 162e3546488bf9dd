"""The websocket load generator, run as a separate process by bench/run.py.

It reads one JSON spec line on stdin, connects every client, prints ``{"ready": ...}``,
waits for a ``go`` line, runs, and prints one JSON result line. The same code drives all
three servers; only the framing differs (``native``: roomsvc's JSON protocol, which the
bare server speaks too; ``socketio``: Engine.IO 4 / Socket.IO 5 text packets over a raw
websocket, so the client costs the same in both cases).

Modes:
  ``send``      every client receives; clients with ``rate`` broadcast a 200-byte message
                that many times a second for ``duration`` s (open loop); one-way latency
                from the send time carried in the body (CLOCK_MONOTONIC is system-wide).
  ``requests``  every client sends ``request`` and waits for its response, in a loop.
  ``idle``      connect and hold until told to stop.
  ``join``      clients connect one by one over ``spread`` s after ``go``; each keeps its
                view of the room (welcome + joined - left) and reports it at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import zlib
from typing import Any

import aiohttp

PAD = 130  # a broadcast body of {"t": <ns>, "pad": "x" * PAD} makes a ~200-byte frame


def crc(pid: str) -> int:
    return zlib.crc32(pid.encode())


class Client:
    def __init__(self, spec: dict[str, Any], protocol: str) -> None:
        self.spec = spec
        self.protocol = protocol
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.me = ""
        self.view: set[str] = set()
        self.received = 0
        self.latencies: list[int] = []
        self.pending: dict[int, asyncio.Future[None]] = {}
        self.close_code: int | None = None
        self.errors = 0
        self.measure = False
        self.reader: asyncio.Task[None] | None = None

    async def connect(self, session: aiohttp.ClientSession) -> None:
        url = self.spec["url"]
        headers = {"Authorization": f"Bearer {self.spec['token']}"} if self.spec.get("token") else {}
        self.ws = await session.ws_connect(url, headers=headers, max_msg_size=0, autoping=True, heartbeat=None)
        if self.protocol == "socketio":
            first = await self.ws.receive(timeout=30)  # engine.io open packet: 0{...}
            assert first.data.startswith("0"), first
            await self.ws.send_str("40")
        while not self.me:  # the welcome
            msg = await self.ws.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"no welcome: {msg.type} {self.ws.close_code}")
            self.handle(msg.data)
        self.reader = asyncio.get_running_loop().create_task(self.read())

    def handle(self, text: str) -> None:
        if self.protocol == "socketio":
            if text == "2":
                assert self.ws is not None
                asyncio.get_running_loop().create_task(self.ws.send_str("3"))
                return
            if not text.startswith("42"):
                return
            kind, data = json.loads(text[2:])
        else:
            frame = json.loads(text)
            kind, data = frame["type"], frame.get("data")
            if kind == "response":
                if not frame.get("ok"):
                    self.errors += 1
                    if self.errors == 1:
                        print(json.dumps({"error": frame.get("error")}), file=sys.stderr)
                fut = self.pending.pop(frame["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
                return
        if kind == "message":
            if self.measure:
                self.received += 1
                self.latencies.append(time.monotonic_ns() - data["body"]["t"])
        elif kind == "welcome":
            self.me = data["participant"]["id"]
            self.view = {p["id"] for p in data["participants"]}
        elif kind == "participant.joined":
            self.view.add(data["id"])
        elif kind == "participant.left":
            self.view.discard(data["id"])
        elif kind == "participants.changed":  # roomsvc's coalesced presence (docs/protocol.md)
            self.view.update(p["id"] for p in data["joined"])
            self.view.difference_update(p["id"] for p in data["left"])

    async def read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.handle(msg.data)
        self.close_code = self.ws.close_code

    async def broadcast(self) -> None:
        assert self.ws is not None
        body = {"t": time.monotonic_ns(), "pad": "x" * PAD}
        if self.protocol == "socketio":
            await self.ws.send_str("42" + json.dumps(["broadcast", {"message_type": "bench", "body": body}]))
        else:
            await self.ws.send_str(json.dumps({"type": "message.broadcast", "data": {"message_type": "bench", "body": body}}))

    async def request(self, rid: int, kind: str, data: dict[str, Any]) -> None:
        assert self.ws is not None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        await self.ws.send_str(json.dumps({"type": kind, "id": rid, "data": data}))
        await asyncio.wait_for(fut, 30)


async def send_loop(client: Client, rate: float, duration: float) -> int:
    start = time.monotonic()
    sent = 0
    while True:
        due = start + sent / rate
        if due - start >= duration:
            return sent
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.broadcast()
        sent += 1


async def request_loop(client: Client, kind: str, data: dict[str, Any], duration: float, lat: list[int]) -> int:
    end = time.monotonic() + duration
    n = 0
    while time.monotonic() < end:
        t0 = time.monotonic_ns()
        await client.request(n, kind, data)
        lat.append(time.monotonic_ns() - t0)
        n += 1
    return n


def ready(extra: dict[str, Any] | None = None) -> None:
    print(json.dumps({"ready": True, **(extra or {})}), flush=True)


async def wait_go() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


def sample(values: list[int], limit: int = 20000) -> list[int]:
    if len(values) <= limit:
        return values
    step = len(values) / limit
    return [values[int(i * step)] for i in range(limit)]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    protocol, mode = spec["protocol"], spec["mode"]
    clients = [Client(c, protocol) for c in spec["clients"]]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        if mode == "join":
            ready()
            await wait_go()
            gap = spec["spread"] / max(1, len(clients))
            t0 = time.monotonic()

            reasons: dict[str, int] = {}

            async def join(i: int, c: Client) -> bool:
                await asyncio.sleep(max(0.0, t0 + i * gap - time.monotonic()))
                try:
                    await c.connect(session)
                    return True
                except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError, AssertionError) as exc:
                    reason = f"{type(exc).__name__}: {str(exc)[:80]}"
                    reasons[reason] = reasons.get(reason, 0) + 1
                    return False

            tasks = [asyncio.ensure_future(join(i, c)) for i, c in enumerate(clients)]
            done, pending = await asyncio.wait(tasks, timeout=spec["spread"] + spec.get("deadline", 30.0))
            for t in pending:
                t.cancel()
            if pending:
                reasons["not connected by the deadline"] = len(pending)
            failed = len(pending) + sum(1 for t in done if not t.result())
            joined_in = time.monotonic() - t0
            print(json.dumps({"joined": True}), flush=True)
            await wait_go()  # the controller lets presence settle, then asks for the views
            result = {
                "failed": failed, "joined_in": joined_in, "reasons": reasons,
                "closed": [c.close_code for c in clients if c.reader is not None and c.reader.done()],
                "views": [[c.me, len(c.view), sum(crc(p) for p in c.view) & 0xFFFFFFFFFFFF] for c in clients if c.me],
            }
        else:
            sem = asyncio.Semaphore(50)

            async def connect(c: Client) -> None:
                async with sem:
                    await c.connect(session)

            await asyncio.gather(*(connect(c) for c in clients))
            ready({"connected": len(clients)})
            await wait_go()
            if mode == "idle":
                result = {"connected": sum(1 for c in clients if c.reader and not c.reader.done())}
            elif mode == "send":
                for c in clients:
                    c.measure = True
                duration = spec["duration"]
                sent = await asyncio.gather(*(send_loop(c, c.spec["rate"], duration) for c in clients if c.spec.get("rate")))
                await asyncio.sleep(spec.get("drain", 1.0))
                lat = [v for c in clients for v in c.latencies]
                result = {"sent": sum(sent), "received": sum(c.received for c in clients), "latencies": sample(lat),
                          "closed": [c.close_code for c in clients if c.reader and c.reader.done()]}
            elif mode == "requests":
                lat: list[int] = []
                counts = await asyncio.gather(*(request_loop(c, spec["kind"], spec["data"], spec["duration"], lat)
                                                 for c in clients))
                result = {"requests": sum(counts), "latencies": sample(lat), "errors": sum(c.errors for c in clients)}
            else:
                raise SystemExit(f"unknown mode {mode}")
        closing = [asyncio.ensure_future(c.ws.close()) for c in clients if c.ws is not None]
        if closing:
            await asyncio.wait(closing, timeout=2)
    return result


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(run(spec))), flush=True)


if __name__ == "__main__":
    main()
