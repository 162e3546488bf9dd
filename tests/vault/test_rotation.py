"""`roomsvc keys rotate` re-wraps every data key online while clients keep reading and
writing; `roomsvc keys retire` then removes the old key and nothing is lost."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time

from tests.support.native_client import ResponseError
from tests.support.server import Server
from tests.support.waiting import until
from tests.vault.conftest import Http, audit_lines, native

ROOM = "room1"
N = 500  # secrets, each with two versions: 1,000 data keys, five re-wrap batches


def value_of(i: int, version: int) -> bytes:
    return f"secret {i} version {version}".encode()


def key_status(server: Server, op: str) -> list[dict]:
    result = server.cli("keys", "status", token=op)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


async def test_rotate_while_reading_then_retire(server: Server) -> None:
    op = server.operator_token()
    token = server.token("alice", ROOM, api=("secrets",))
    async with Http(server, token) as http:
        for version in (1, 2):
            for start in range(0, N, 100):
                replies = await asyncio.gather(*[http.set(ROOM, f"s{i}", value_of(i, version)) for i in range(start, start + 100)])
                assert all(r.status == 200 for r in replies)
        bag = await http.call("PUT", "/v1/admin/secrets/keys/bag", json={"data": {"A": "1"}})
        assert bag.status == 403  # a room token; the operator creates it below
    async with Http(server, op) as admin:
        assert (await admin.call("PUT", "/v1/admin/secrets/keys/bag", json={"data": {"A": "1"}})).status == 200

    (old,) = key_status(server, op)
    assert old["active"] and old["uses"] == 2 * N + 1

    stop = asyncio.Event()
    reads: list[float] = []
    failures: list[str] = []
    written: dict[str, bytes] = {}

    async def http_reader(seed: int) -> None:
        rng = random.Random(seed)
        async with Http(server, token) as reader:
            while not stop.is_set():
                i = rng.randrange(N)
                reply = await reader.get(ROOM, f"s{i}")
                if reply.status != 200 or reply.body["value_base64"] is None:
                    failures.append(f"http s{i}: {reply.status} {reply.text[:200]}")
                elif reply.body["secret"]["version"] != 2:
                    failures.append(f"http s{i}: version {reply.body['secret']['version']}")
                reads.append(time.monotonic())

    async def ws_reader(seed: int) -> None:
        rng = random.Random(seed)
        async with native(server, token, ROOM) as ws:
            while not stop.is_set():
                i = rng.randrange(N)
                try:
                    got = await ws.request("secrets.get", {"id": f"s{i}"})
                except ResponseError as exc:
                    failures.append(f"ws s{i}: {exc}")
                else:
                    if base64.b64decode(got["value"]) != value_of(i, 2):
                        failures.append(f"ws s{i}: wrong value")
                reads.append(time.monotonic())

    async def writer() -> None:
        n = 0
        async with Http(server, token) as w:
            while not stop.is_set():
                secret_id, value = f"during{n}", f"written during rotation {n}".encode()
                reply = await w.set(ROOM, secret_id, value)
                if reply.status == 200:
                    written[secret_id] = value
                else:
                    failures.append(f"write {secret_id}: {reply.status}")
                n += 1

    tasks = [asyncio.create_task(http_reader(s)) for s in range(3)] + [asyncio.create_task(ws_reader(9))]
    tasks.append(asyncio.create_task(writer()))
    await until(lambda: len(reads) > 20 and bool(written), "the readers and the writer are under way")
    rotate_started = time.monotonic()
    result = await asyncio.to_thread(server.cli, "keys", "rotate", token=op)
    rotate_ended = time.monotonic()
    written_by_end = len(written)
    await until(lambda: len(written) > written_by_end and reads[-1] > rotate_ended, "the load goes on past the rotation")
    stop.set()
    await asyncio.gather(*tasks)

    assert result.returncode == 0, result.stderr.decode()
    assert not failures, failures[:5]
    during = [t for t in reads if rotate_started <= t <= rotate_ended]
    assert len(during) > 20, f"only {len(during)} reads overlapped the rotation"
    stderr = result.stderr.decode()
    assert "re-wrapping data keys [" in stderr and "100%" in stderr  # the progress bar
    assert stderr.count("\r") >= 3  # it moved: a start, batches, the end
    summary = result.stdout.decode()
    new_id = summary.split("new active key ")[1].split(":")[0]
    rewrapped = int(summary.split(": ")[1].split(" data keys re-wrapped")[0])
    # everything written before the switch, including the concurrent writer's first rows
    assert 2 * N + 1 <= rewrapped <= 2 * N + 1 + len(written) and summary.endswith(", 0 failed\n")

    statuses = {k["id"]: k for k in key_status(server, op)}
    assert statuses[old["id"]]["uses"] == 0 and not statuses[old["id"]]["active"]
    assert statuses[new_id]["active"] and statuses[new_id]["uses"] == 2 * N + 1 + len(written)

    # retiring the active key, which protects everything, is refused
    refused = server.cli("keys", "retire", new_id, token=op)
    assert refused.returncode == 1 and b"still protects" in refused.stderr
    unknown = server.cli("keys", "retire", "k000000000000", token=op)
    assert unknown.returncode == 1 and b"no key" in unknown.stderr
    retired = server.cli("keys", "retire", old["id"], token=op)
    assert retired.returncode == 0, retired.stderr.decode()
    assert [k["id"] for k in key_status(server, op)] == [new_id]

    # nothing lost, before and after a restart (the keyring reloads without the old key)
    for restart in (False, True):
        if restart:
            server.stop()
            server.start()
            token = server.token("alice", ROOM, api=("secrets",))
        async with Http(server, token) as http:
            for start in range(0, N, 100):
                replies = await asyncio.gather(*[http.get(ROOM, f"s{i}") for i in range(start, start + 100)])
                for i, reply in zip(range(start, start + 100), replies):
                    assert reply.status == 200, reply.text
                    assert reply.body["secret"]["version"] == 2
                    assert base64.b64decode(reply.body["value_base64"]) == value_of(i, 2)
            for secret_id, value in written.items():
                assert await http.value(ROOM, secret_id) == value
            versions = (await http.versions(ROOM, "s0")).body["versions"]
            assert [v["version"] for v in versions] == [1, 2]  # old versions were re-wrapped too
    actions = [(line["action"], line["outcome"]) for line in await audit_lines(server, identity="operator")]
    assert ("keys.rotate", "ok") in actions and ("keys.retire", "ok") in actions


async def test_rotation_finishes_when_the_client_goes_away(server: Server) -> None:
    """The server does the work: a CLI interrupted after the first progress line (Ctrl-C)
    must not leave the rotation half done."""
    op = server.operator_token()
    token = server.token("walker", ROOM, api=("secrets",))
    async with Http(server, token) as http:
        for start in range(0, 1000, 100):
            await asyncio.gather(*[http.set(ROOM, f"w{i}", b"v") for i in range(start, start + 100)])
    before = key_status(server, op)
    async with Http(server, op) as admin:
        async with admin.session.post(server.url + "/v1/admin/keys/rotate") as response:
            first = json.loads(await response.content.readline())
            assert first["done"] == 0 and first["total"] >= 1000
            response.close()  # drop the connection mid-stream
        keys: list = []

        async def rotated() -> bool:
            keys[:] = (await admin.call("GET", "/v1/admin/keys")).body["keys"]
            return len(keys) == len(before) + 1 and all(k["uses"] == 0 for k in keys if not k["active"])

        await until(rotated, "the rotation finishes without its client")
        assert all(k["uses"] == 0 for k in keys if not k["active"]), keys
    lines = [line for line in await audit_lines(server, identity="operator") if line["action"] == "keys.rotate"]
    assert lines[-1]["outcome"] == "ok"
    async with Http(server, token) as http:
        assert await http.value(ROOM, "w999") == b"v"
