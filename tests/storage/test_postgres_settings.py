"""storage.engine / storage.postgres_*: the DSN never carries the password, which comes
from the environment only and never prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomsvc.config import load_settings
from roomsvc.errors import ConfigError

CANARY = "Canary-Settings-Pass-0042"


def test_the_password_comes_from_the_environment_and_never_prints() -> None:
    env = {"ROOMSVC_STORAGE_ENGINE": "postgres", "ROOMSVC_STORAGE_POSTGRES_DSN": "postgresql://roomsvc@db/roomsvc"}
    own = load_settings(environ={**env, "ROOMSVC_STORAGE_POSTGRES_PASSWORD": CANARY, "PGPASSWORD": "other"})
    assert own.storage.postgres_password.reveal() == CANARY  # roomsvc's own variable wins
    assert load_settings(environ={**env, "PGPASSWORD": CANARY}).storage.postgres_password.reveal() == CANARY
    assert CANARY not in repr(own) and CANARY not in str(own.storage)
    assert not load_settings(environ=env).storage.postgres_password  # none: trust, peer or certificate auth


@pytest.mark.parametrize("dsn", [
    f"postgresql://roomsvc:{CANARY}@db:5432/roomsvc",
    f"postgres://roomsvc:{CANARY}@db/roomsvc",
    f"postgresql://roomsvc@db/roomsvc?sslmode=require&password={CANARY}",
    f"host=db user=roomsvc password={CANARY} dbname=roomsvc",
    f"host=db PASSWORD = {CANARY}",
])
def test_a_dsn_holding_a_password_is_refused_without_echoing_it(dsn: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"ROOMSVC_STORAGE_ENGINE": "postgres", "ROOMSVC_STORAGE_POSTGRES_DSN": dsn})
    assert caught.value.key == "storage.postgres_dsn"
    assert "ROOMSVC_STORAGE_POSTGRES_PASSWORD" in caught.value.reason
    assert CANARY not in str(caught.value) and CANARY not in caught.value.reason


def test_the_password_is_never_read_from_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\nengine = "postgres"\npostgres_dsn = "postgresql://r@db/r"\npostgres_password = "{CANARY}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=cfg, environ={})
    assert caught.value.key == "storage.postgres_password" and CANARY not in str(caught.value)


@pytest.mark.parametrize(("env", "key"), [
    ({"ROOMSVC_STORAGE_ENGINE": "postgres"}, "storage.postgres_dsn"),
    ({"ROOMSVC_STORAGE_ENGINE": "mysql"}, "storage.engine"),
    ({"ROOMSVC_STORAGE_ENGINE": "postgres", "ROOMSVC_STORAGE_POSTGRES_DSN": "db.example.com"}, "storage.postgres_dsn"),
    ({"ROOMSVC_STORAGE_POSTGRES_POOL_SIZE": "0"}, "storage.postgres_pool_size"),
])
def test_bad_engine_settings_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert caught.value.key == key


def test_sqlite_stays_the_default() -> None:
    s = load_settings(environ={})
    assert s.storage.engine == "sqlite" and s.storage.postgres_dsn == ""
