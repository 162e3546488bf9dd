"""Settings: defaults, file, environment, validation with the key path, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomsvc.config import Settings, check_serving, load_settings, redacted
from roomsvc.errors import ConfigError
from roomsvc.ids import SecretStr

REPO = Path(__file__).resolve().parents[1]


def test_config_file_documents_the_real_defaults() -> None:
    assert load_settings(config_file=REPO / "config/roomsvc.toml", environ={}) == Settings()


def test_environment_overrides_file_and_overrides_win(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = 9000\n[websocket]\nheartbeat = 3.5\n')
    s = load_settings(config_file=cfg, environ={"ROOMSVC_SERVER_PORT": "9100", "ROOMSVC_ROOMS_AUTO_CREATE": "false"})
    assert s.server.port == 9100
    assert s.websocket.heartbeat == 3.5
    assert s.rooms.auto_create is False
    s = load_settings(config_file=cfg, environ={"ROOMSVC_SERVER_PORT": "9100"}, overrides={"server.port": 0})
    assert s.server.port == 0


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "environ", "key", "reason"),
    [
        ("[server]\nport = 'x'\n", {}, "server.port", "expected int"),
        ("", {"ROOMSVC_WEBSOCKET_HEARTBEAT": "soon"}, "websocket.heartbeat", "expected float"),
        ("[server]\nportt = 1\n", {}, "server.portt", "unknown setting"),
        ("[nope]\n", {}, "nope", "unknown section"),
        ("[websocket]\nmax_message_size = 0\n", {}, "websocket.max_message_size", "at least 1024"),
        ("[secrets]\nmax_value_size = 200000\n", {}, "websocket.max_message_size", "must exceed"),
        ("[server]\nlog_level = 'loud'\n", {}, "server.log_level", "one of"),
        ("[keys]\nmaster_key = 'abc'\n", {}, "keys.master_key", "never put a key"),
        ("[server]\npublic_url = 'ftp://x'\n", {}, "server.public_url", "absolute http"),
        ("[server]\npublic_url = 'http://example.com'\n", {}, "server.public_url", "must be https"),
        ("[tokens]\nmax_ttl = -5\n", {}, "tokens.max_ttl", "negative"),
        ("[server]\nport = 70000\n", {}, "server.port", "between 0 and 65535"),
        ("[server\n", {}, "config", ""),
    ],
)
def test_bad_values_name_the_key_and_the_reason(tmp_path: Path, text: str, environ: dict, key: str, reason: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=cfg, environ=environ)
    assert info.value.key == key
    assert reason in info.value.reason


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=tmp_path / "absent.toml", environ={})
    assert "not found" in info.value.reason


def test_secret_settings_never_print() -> None:
    s = load_settings(config_file=REPO / "config/roomsvc.toml", environ={"ROOMSVC_MASTER_KEY": "c2VjcmV0LW1hc3Rlcg=="})
    assert s.keys.master_key.reveal() == "c2VjcmV0LW1hc3Rlcg=="
    for text in (repr(s), str(s), repr(redacted(s))):
        assert "c2VjcmV0LW1hc3Rlcg" not in text
    assert repr(SecretStr("x")) == "SecretStr('**********')"


def test_production_defaults_are_strict_and_one_setting_relaxes_them() -> None:
    with pytest.raises(ConfigError) as info:
        check_serving(load_settings(config_file=REPO / "config/roomsvc.toml", environ={}))
    assert info.value.key == "server.public_url"
    assert "allow_insecure_loopback" in info.value.reason
    check_serving(load_settings(config_file=REPO / "config/roomsvc.toml", environ={"ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "1"}))
    check_serving(load_settings(config_file=REPO / "config/roomsvc.toml", environ={"ROOMSVC_SERVER_PUBLIC_URL": "https://rooms.example.com"}))
