from __future__ import annotations

from typing import Iterator

import pytest

from tests.cluster.nodes import cluster_env, drop_keys, new_prefix, redis_available, start_node, stop_all
from tests.support import postgres
from tests.support.peers import need
from tests.support.server import Server


class Cluster:
    def __init__(self, a: Server, b: Server, env: dict[str, str], prefix: str, dsn: str) -> None:
        self.a, self.b, self.env, self.prefix, self.dsn = a, b, env, prefix, dsn


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Nodes A and B, cluster on, one PostgreSQL database, one Redis prefix of this run."""
    need(postgres.available(), f"PostgreSQL is not reachable at {postgres.ADMIN_DSN} (set ROOMSVC_TEST_POSTGRES)")
    need(redis_available(), "Redis is not reachable (set ROOMSVC_TEST_REDIS)")
    base = tmp_path_factory.mktemp("cluster")
    prefix = new_prefix()
    with postgres.database("roomsvc_test_cluster") as dsn:
        env = postgres.postgres_env(dsn)
        nodes: list[Server] = []
        try:
            nodes.append(start_node(base, "a", {**env, **cluster_env(prefix, "node-a")}, None))
            nodes.append(start_node(base, "b", {**env, **cluster_env(prefix, "node-b")}, nodes[0]))
            yield Cluster(nodes[0], nodes[1], env, prefix, dsn)
        finally:
            stop_all(nodes)
            drop_keys(prefix)
