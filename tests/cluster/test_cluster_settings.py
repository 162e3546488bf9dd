"""[cluster]: several nodes need PostgreSQL; the Redis password comes from the environment
only, never from the URL or the file, and never prints (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomsvc.config import load_settings
from roomsvc.errors import ConfigError

CANARY = "Canary-Redis-Pass-0815"
PG = {"ROOMSVC_STORAGE_ENGINE": "postgres", "ROOMSVC_STORAGE_POSTGRES_DSN": "postgresql://roomsvc@db/roomsvc"}


def test_off_by_default_and_refused_on_sqlite() -> None:
    assert load_settings(environ={}).cluster.enabled is False
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"ROOMSVC_CLUSTER_ENABLED": "1"})
    assert caught.value.key == "cluster.enabled" and "postgres" in caught.value.reason
    assert load_settings(environ={**PG, "ROOMSVC_CLUSTER_ENABLED": "1"}).cluster.enabled


def test_the_password_comes_from_the_environment_and_never_prints() -> None:
    s = load_settings(environ={**PG, "ROOMSVC_CLUSTER_ENABLED": "1", "ROOMSVC_CLUSTER_REDIS_PASSWORD": CANARY})
    assert s.cluster.redis_password.reveal() == CANARY
    assert CANARY not in repr(s) and CANARY not in str(s.cluster)


@pytest.mark.parametrize("url", [f"redis://:{CANARY}@cache:6379/0", f"rediss://user:{CANARY}@cache/0",
                                 f"redis://cache:6379/0?password={CANARY}"])
def test_a_url_holding_a_password_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**PG, "ROOMSVC_CLUSTER_REDIS_URL": url})
    assert caught.value.key == "cluster.redis_url" and "ROOMSVC_CLUSTER_REDIS_PASSWORD" in caught.value.reason
    assert CANARY not in str(caught.value)


def test_the_password_is_never_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "roomsvc.toml"
    path.write_text(f'[cluster]\nredis_password = "{CANARY}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=path, environ={})
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize(("env", "key"), [
    ({"ROOMSVC_CLUSTER_HEARTBEAT_INTERVAL": "0"}, "cluster.heartbeat_interval"),
    ({"ROOMSVC_CLUSTER_NODE_EXPIRY": "0.5"}, "cluster.node_expiry"),
    ({"ROOMSVC_CLUSTER_PREFIX": "a b"}, "cluster.prefix"),
    ({"ROOMSVC_CLUSTER_NODE_ID": "no/slash"}, "cluster.node_id"),
    ({"ROOMSVC_CLUSTER_REDIS_URL": "http://cache"}, "cluster.redis_url"),
])
def test_bad_values_name_their_setting(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**PG, **env})
    assert caught.value.key == key
