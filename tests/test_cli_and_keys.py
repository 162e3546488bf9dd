"""The CLI's local commands, development mode and the sealed state."""

from __future__ import annotations

import argparse
import ast
import base64
import inspect
import itertools
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import jwt
import pytest

from roomsvc.cli.main import build_parser
from tests.support.server import REPO, Server


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "roomsvc", *args], capture_output=True, text=True, env=full, cwd=REPO, timeout=timeout)


def _command_paths(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _command_paths(sub, (*prefix, name))


#: the commands that read settings, so take --config and --data-dir; the others talk to a server
LOCAL = {("serve",), ("token",), ("apikey",), ("toolkit", "proxy"), ("toolkit", "mcp")}  # toolkit mcp: issue 17
LOCAL |= {("migrate",), ("export",), ("import",)}  # issue 15: storage commands read settings


def test_every_command_has_help_and_takes_the_options_it_uses(capsys: pytest.CaptureFixture[str]) -> None:
    paths = list(_command_paths(build_parser()))
    assert ("room", "secret", "set") in paths and ("keys", "rotate") in paths
    for path in paths:
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([*path, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "usage: roomsvc" in out
        leaf = not any(p[: len(path)] == path and len(p) > len(path) for p in paths)
        if path in LOCAL:
            assert "--config" in out and "--data-dir" in out, path
        elif leaf:
            assert "--url" in out and "--token" in out, path
            assert "--config" not in out and "--data-dir" not in out, path  # a client command reads no settings
    assert run("--help").returncode == 0  # and the real entry point runs


def _parsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {deeper}", p) for deeper, p in _parsers(sub))


def _reads(func) -> set[str]:
    """Every ``args.NAME`` (or ``getattr(args, "NAME")``) that ``func`` and the roomsvc functions it
    calls read, found in their source."""
    names: set[str] = set()
    seen: set[object] = set()
    todo = [func]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(f)))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "args":
                names.add(node.attr)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                first = node.args[0] if node.args else None
                if (node.func.id == "getattr" and isinstance(first, ast.Name) and first.id == "args"
                        and isinstance(node.args[1], ast.Constant)):
                    names.add(node.args[1].value)
                called = f.__globals__.get(node.func.id)
                if inspect.isfunction(called) and called.__module__.startswith("roomsvc."):
                    todo.append(called)
    return names


def test_no_command_takes_a_flag_it_ignores() -> None:
    """Each option a command accepts is read by the function that runs it: a flag that is
    accepted and silently ignored misleads whoever passes it."""
    for name, parser in _parsers(build_parser()):
        func = parser.get_default("func")
        if func is None:
            continue  # a group: its commands are checked
        reads = _reads(func)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.dest in reads, f"`roomsvc {name}` takes {action.option_strings or action.dest} but never reads it"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("room", "secret", "set", "--room", "r1", "--id", "x"), "give exactly one value source"),
        (("room", "secret", "set", "--room", "r1", "--id", "x", "--text", "a", "--base64", "QQ=="), "give exactly one value source"),
        (("room", "secret", "set", "--room", "r1", "--id", "x", "--base64", "not base64!"), "not valid base64"),
        (("room", "secret", "oauth", "--room", "r1", "--from-participant-id", "p1"), "name a --connector"),
        (("token", "revoke", "--jti", "abc", "--room", "r1"), "--room narrows --identity"),
        (("audit", "--since", "yesterday"), "--since takes seconds ago"),
        (("secret", "keys", "create", "--id", "k", "--data", "NOEQUALS"), "no '='"),
        (("toolkit", "proxy", "--room", "r1", "--listen", "nowhere", "--upstream", "https://example.com",
          "--header-secret", "A:{x}"), "--listen takes HOST:PORT"),
        # issue 17: the MCP bridge
        (("toolkit", "mcp", "--room", "r1", "--url", "http://127.0.0.1:9/mcp", "--header", "nocolon"), "--header takes"),
        (("toolkit", "mcp", "--room", "r1", "--url", "ftp://x/mcp"), "--url must be an absolute http(s) URL"),
    ],
)
def test_usage_errors_exit_2_with_a_hint_before_anything_is_sent(args, message: str) -> None:
    # nothing listens on port 9: had the command sent anything, it would say it cannot reach roomsvc
    result = run(*args, env={"ROOMSVC_URL": "http://127.0.0.1:9", "ROOMSVC_TOKEN": "x"})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "cannot reach" not in result.stderr
    command = " ".join(itertools.takewhile(lambda a: not a.startswith("-"), args))
    assert "nothing was sent" in result.stderr and f"`roomsvc {command}" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> Server:
    srv = Server(tmp_path_factory.mktemp("keys") / "data").start()
    srv.stop()
    return srv


def test_first_start_is_development_mode_with_private_key_files(started: Server) -> None:
    log = started.stderr()
    assert "DEVELOPMENT MODE" in log and "allow_insecure_loopback is ON" in log
    for name in ("master.key", "signing.key", "roomsvc.db"):
        mode = stat.S_IMODE((started.data_dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert len(base64.b64decode((started.data_dir / "master.key").read_text())) == 32
    assert any("listening on http://127.0.0.1:" in line for line in started.banner)
    assert any("roomsvc token" in line for line in started.banner)


def test_token_command_prints_a_meshagent_shaped_token(started: Server) -> None:
    result = run("token", "--data-dir", str(started.data_dir), "--room", "r1", "--identity", "alice",
                 "--role", "agent", "--api", "secrets", "--api", "admin", "--ttl", "120")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    ring = started.keyring()
    claims = jwt.decode(token, ring.primary.secret, algorithms=["HS256"])
    assert claims["name"] == "alice" and claims["kid"] == ring.primary.kid and claims["sub"] == ring.project_id
    assert claims["grants"] == [{"name": "room", "scope": "r1"}, {"name": "role", "scope": "agent"},
                                {"name": "api", "scope": {"secrets": {}, "admin": {}}}]
    assert 110 <= claims["exp"] - claims["iat"] <= 120

    operator = jwt.decode(run("token", "--data-dir", str(started.data_dir), "--operator").stdout.strip(),
                          ring.primary.secret, algorithms=["HS256"])
    assert operator["grants"] == [{"name": "role", "scope": "user"}, {"name": "api", "scope": {"admin": {}}}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--room", "r1"), "give --room and --identity"),
        (("--operator", "--room", "r1"), "operator token has no room"),
        (("--room", "r1", "--identity", "a", "--ttl", "999999999"), "--ttl must be between"),
        (("--room", "bad room", "--identity", "a"), "invalid room name"),
    ],
)
def test_token_command_errors_say_what_to_do(started: Server, args, message: str) -> None:
    result = run("token", "--data-dir", str(started.data_dir), *args)
    assert result.returncode == 2 and message in result.stderr  # a usage error


def test_token_without_keys_explains(tmp_path: Path) -> None:
    result = run("token", "--data-dir", str(tmp_path / "empty"), "--room", "r", "--identity", "a")
    assert result.returncode == 2
    assert "keys.signing_key_file" in result.stderr and "roomsvc serve" in result.stderr


def test_apikey_is_the_signing_key(started: Server) -> None:
    result = run("apikey", "--data-dir", str(started.data_dir))
    key = result.stdout.strip()
    ring = started.keyring()
    assert key.startswith("ma-") and key.endswith(ring.primary.secret.decode())
    # the key also works as the server's signing key from the environment
    from roomsvc.crypto.keys import keyring_from_api_key

    assert keyring_from_api_key(key).primary == ring.primary


def test_a_database_without_its_master_key_stays_sealed(started: Server, tmp_path: Path) -> None:
    data = tmp_path / "copy"
    data.mkdir()
    for name in ("roomsvc.db", "signing.key"):
        (data / name).write_bytes((started.data_dir / name).read_bytes())
    env = {"ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK": "1"}
    result = run("serve", "--port", "0", "--data-dir", str(data), env=env)
    assert result.returncode == 3
    assert "sealed" in result.stderr and "keys.master_key_file" in result.stderr and "ROOMSVC_MASTER_KEY" in result.stderr
    assert not (data / "master.key").exists()  # never a new key over existing data

    wrong = base64.b64encode(os.urandom(32)).decode()
    result = run("serve", "--port", "0", "--data-dir", str(data), env={**env, "ROOMSVC_MASTER_KEY": wrong})
    assert result.returncode == 3 and "does not open" in result.stderr
    assert wrong not in result.stderr

    right = (started.data_dir / "master.key").read_text().strip()
    srv = Server(data, env={"ROOMSVC_MASTER_KEY": right}).start()
    assert srv.stop() == 0


def test_serve_refuses_insecure_links_without_the_development_setting(tmp_path: Path) -> None:
    result = run("serve", "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "server.public_url" in result.stderr and "allow_insecure_loopback" in result.stderr
    assert not (tmp_path / "d").exists()


def test_bad_config_stops_start_up_with_the_key_path(tmp_path: Path) -> None:
    result = run("serve", "--data-dir", str(tmp_path / "d"), env={"ROOMSVC_WEBSOCKET_HEARTBEAT": "often"})
    assert result.returncode == 2 and "websocket.heartbeat" in result.stderr and "expected float" in result.stderr


def test_client_commands_explain_a_missing_server() -> None:
    result = run("room", "secret", "list", "--room", "r1", env={"ROOMSVC_URL": "http://127.0.0.1:9", "ROOMSVC_TOKEN": "x"})
    assert result.returncode == 1
    assert "cannot reach roomsvc" in result.stderr and "roomsvc serve" in result.stderr
    result = run("room", "secret", "list", "--room", "r1", env={"ROOMSVC_URL": "http://127.0.0.1:9"})
    assert result.returncode == 1 and "ROOMSVC_TOKEN" in result.stderr
