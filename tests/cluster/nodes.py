"""Several real roomsvc nodes on one PostgreSQL database, joined over Redis (issue 15).

Each test run uses a key and channel prefix of its own (``cluster.prefix``) and deletes
its keys at the end; Redis is the one at ROOMSVC_TEST_REDIS (default 127.0.0.1:6379)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import redis

from tests.storage.test_postgres_nodes import copy_keys
from tests.support.server import Server

REDIS_URL = os.environ.get("ROOMSVC_TEST_REDIS", "redis://127.0.0.1:6379/0")
HEARTBEAT = 0.2
EXPIRY = 1.0
#: a killed node's participants leave the others' lists within this (docs/scale.md)
BOUND = EXPIRY + HEARTBEAT


@lru_cache(maxsize=1)
def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def cluster_env(prefix: str, node: str, redis_url: str = REDIS_URL) -> dict[str, str]:
    return {
        "ROOMSVC_CLUSTER_ENABLED": "1", "ROOMSVC_CLUSTER_REDIS_URL": redis_url, "ROOMSVC_CLUSTER_PREFIX": prefix,
        "ROOMSVC_CLUSTER_NODE_ID": node, "ROOMSVC_CLUSTER_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "ROOMSVC_CLUSTER_NODE_EXPIRY": str(EXPIRY), "ROOMSVC_CLUSTER_REDIS_TIMEOUT": "0.5",
    }


def new_prefix() -> str:
    return f"roomsvc-test-{secrets.token_hex(4)}"


def drop_keys(prefix: str, redis_url: str = REDIS_URL) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def start_node(base: Path, name: str, env: dict[str, str], keys_from: Server | None) -> Server:
    """A node in ``base/name``; the first one generates the keys, the others copy them."""
    if keys_from is None:
        (base / name).mkdir()
        return Server(base / name / "data", env=env).start()
    return Server(copy_keys(keys_from.data_dir, base / name), env=env).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of one test's own on an ephemeral port, to be stopped under a node."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return self
            except (redis.RedisError, OSError):
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def stop_all(nodes: Iterator[Server] | list[Server]) -> None:
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.stop()
