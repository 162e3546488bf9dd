"""Shared helpers of the services tests: a spec builder, the probe script, value hashes."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

from tests.support.server import Server

ROOM = "room1"
LITERAL = "literal-CANARY-1c9e"
ROOM_SECRET = "room-secret-CANARY-77ad"
BAG_A = "bag-a-CANARY-40f2"
BAG_B = "bag-b-CANARY-9d01"
PULL_PASSWORD = "pull-PASSWORD-CANARY-e8b4"
CANARIES = (ROOM_SECRET, BAG_A, BAG_B, PULL_PASSWORD)


def probe_script(bb: str) -> str:
    """A shell script that proves by hashes (never values) what arrived (a hash of every
    variable it has), calls roomsvc with its token, prints a secret outright (its logs
    must mask it) and then waits."""
    return (
        f"for v in $({bb} env | {bb} cut -d= -f1); do "
        f"eval \"x=\\${{$v-}}\"; echo \"hash $v $(printf '%s\\n' \"$x\" | {bb} sha256sum | {bb} cut -c1-64)\"; done; "
        f"echo \"names $({bb} env | {bb} cut -d= -f1 | {bb} sort | {bb} tr '\\n' ' ')\"; "
        f"if {bb} wget -q -O /dev/null --header \"Authorization: Bearer $ROOM_TOKEN\" "
        f"\"http://127.0.0.1:$RS_PORT/v1/rooms/{ROOM}/secrets\"; then echo 'auth ok'; else echo 'auth refused'; fi; "
        f"echo \"shouting $ROOMSEC\"; exec {bb} sleep 600"
    )


def probe_spec(name: str, command: list[str], port: int, *, image: str | None = None, pull_secret: str | None = None,
               secret_id: str = "gh") -> dict[str, Any]:
    container: dict[str, Any] = {
        "command": command,
        "environment": [
            {"name": "LIT", "value": LITERAL},
            {"name": "ROOMSEC", "secret": {"identity": "bot", "id": secret_id}},
            {"name": "ROOM_TOKEN", "token": {"identity": name, "role": "agent", "api": ["secrets"]}},
            {"name": "RS_PORT", "value": str(port)},
        ],
        "secrets": ["bag"],
    }
    if image:
        container["image"] = image
    if pull_secret:
        container["pull_secret"] = pull_secret
    return {"kind": "Service", "metadata": {"name": name}, "container": container}


def digest(value: str) -> str:
    """What the probe prints for a variable: sha256 of the value and a newline (unset = empty)."""
    return hashlib.sha256((value + "\n").encode()).hexdigest()


def hashes(lines: list[str]) -> dict[str, str]:
    return {line.split()[1]: line.split()[2] for line in lines if line.startswith("hash ") and len(line.split()) == 3}


def seed_vault(server: Server, op: str) -> None:
    """A room secret of 'bot' and a keys bag, through the CLI as a person would."""
    bot = server.token("bot", ROOM, api=("secrets",))
    r = server.cli("room", "secret", "set", "--room", ROOM, "--id", "gh", "--text", ROOM_SECRET, token=bot)
    assert r.returncode == 0, r.stderr
    r = server.cli("secret", "keys", "create", "--id", "bag", "--data", f"BAG_A={BAG_A} BAG_B={BAG_B}", token=op)
    assert r.returncode == 0, r.stderr


def api(server: Server, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """One admin API call with the operator token (the CLI is exercised elsewhere; each of
    its runs starts a Python interpreter, which a loaded machine makes slow)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {server.operator_token()}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def create(server: Server, op: str, spec: dict[str, Any], *, replace: bool = False) -> None:
    status, body = api(server, "POST", f"/v1/admin/rooms/{ROOM}/services", {"spec": spec, "replace": replace})
    assert status == 201, body


def run(server: Server, verb: str, name: str) -> tuple[int, dict[str, Any]]:
    """start / stop a service through the API."""
    return api(server, "POST", f"/v1/admin/rooms/{ROOM}/services/{name}/{verb}")


def no_canary(text: str | bytes) -> None:
    data = text.decode() if isinstance(text, bytes) else text
    for canary in CANARIES:
        assert canary not in data
