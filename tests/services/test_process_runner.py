"""Room services on the ``process`` runner, end to end: a real server runs a real command.

The probe proves by hashes which variables arrived, calls roomsvc with its minted token,
and prints one secret outright so the log ring's masking is tested too.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.services.conftest import (
    BAG_A,
    BAG_B,
    LITERAL,
    PULL_PASSWORD,
    ROOM,
    ROOM_SECRET,
    api,
    create,
    digest,
    hashes,
    no_canary,
    probe_script,
    probe_spec,
    run,
    seed_vault,
)
from tests.support.peers import need
from tests.support.server import Server
from tests.support.waiting import until
from tests.vault.conftest import Http, audit_lines

BB = "/bin/busybox"
SETTINGS = {
    "ROOMSVC_SERVICES_RUNNER": "process",
    "ROOMSVC_SERVICES_BACKOFF_INITIAL": "0.1",
    "ROOMSVC_SERVICES_BACKOFF_MAX": "0.4",
    "ROOMSVC_SERVICES_STOP_TIMEOUT": "2",
    # a short token lifetime, so renewal (a restart with a fresh environment) is seen
    "ROOMSVC_SERVICES_TOKEN_TTL": "6",
    "ROOMSVC_SERVICES_TOKEN_RENEW_MARGIN": "4",
    "ROOMSVC_SERVICES_LOG_LINES": "50",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    need(__import__("os").path.exists(BB), "busybox-static (/bin/busybox) is not installed")
    srv = Server(tmp_path_factory.mktemp("svc") / "data", env=SETTINGS).start()
    seed_vault(srv, srv.operator_token())
    yield srv
    srv.stop()
    no_canary(srv.stderr())  # the server's own log never carried a value


def cli_json(server: Server, *args: str) -> object:
    r = server.cli(*args, token=server.operator_token())
    assert r.returncode == 0, r.stderr
    no_canary(r.stdout + r.stderr)
    return json.loads(r.stdout)


async def logs(server: Server, name: str) -> list[str]:
    async with Http(server, server.operator_token()) as http:
        reply = await http.call("GET", f"/v1/admin/rooms/{ROOM}/services/{name}/logs")
    assert reply.status == 200, reply.text
    return reply.body["logs"]


async def test_the_environment_arrives_exactly_and_the_token_authenticates(server: Server) -> None:
    op = server.operator_token()
    create(server, op, probe_spec("prober", [BB, "sh", "-c", probe_script(BB)], server.port or 0))
    started = server.cli("service", "start", "prober", "--room", ROOM, token=op)
    assert started.returncode == 0, started.stderr
    await until(lambda: _has(server, "auth "), "the probe reported")
    lines = await logs(server, "prober")
    got = hashes(lines)
    assert got["LIT"] == digest(LITERAL) and got["ROOMSEC"] == digest(ROOM_SECRET)
    assert got["BAG_A"] == digest(BAG_A) and got["BAG_B"] == digest(BAG_B)
    assert digest(PULL_PASSWORD) not in got.values()  # no variable holds the pull secret's password
    names = next(line for line in lines if line.startswith("names "))
    # exactly the resolved environment (plus what busybox sh itself sets): nothing of the server's
    assert set(names.split()[1:]) - {"PWD", "SHLVL", "PATH"} == {"LIT", "ROOMSEC", "ROOM_TOKEN", "RS_PORT", "BAG_A", "BAG_B"}
    assert "auth ok" in lines
    assert "shouting [hidden]" in lines  # the log ring masks resolved values
    no_canary("\n".join(lines))

    # the values are not on any command line
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    no_canary(ps)
    assert LITERAL not in ps

    status = cli_json(server, "service", "status", "prober", "--room", ROOM)
    # "starting" while a renewal (every 2 s here) restarts it
    assert isinstance(status, dict) and status["state"] in ("running", "starting") and status["runner"] == "process"
    # the minted token is renewed before it expires: the service restarts with a fresh one
    await until(lambda: _renewed(server), "a token renewal")

    audit = await audit_lines(server, room=ROOM)
    channels = {(a["actor"], a["action"], a["secret_id"], a["channel"], a["outcome"]) for a in audit}
    assert ("bot", "read", "gh", "service:prober", "ok") in channels
    assert ("service:prober", "mint", "token", "service:prober", "ok") in channels
    assert ("operator", "service_create", "prober", "admin", "ok") in channels
    assert ("operator", "service_start", "prober", "admin", "ok") in channels
    bag_uses = [a for a in await audit_lines(server) if a["secret_id"] == "bag" and a["action"] == "use"]
    assert bag_uses and all(a["actor"] == "service:prober" for a in bag_uses)

    stopped = server.cli("service", "stop", "prober", "--room", ROOM, token=op)
    assert stopped.returncode == 0, stopped.stderr
    assert cli_json(server, "service", "status", "prober", "--room", ROOM)["state"] == "stopped"  # type: ignore[index]
    assert "sleep 600" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


async def _has(server: Server, prefix: str) -> bool:
    return any(line.startswith(prefix) for line in await logs(server, "prober"))


async def status(server: Server, name: str) -> dict:
    async with Http(server, server.operator_token()) as http:
        reply = await http.call("GET", f"/v1/admin/rooms/{ROOM}/services/{name}/status")
    assert reply.status == 200, reply.text
    return reply.body["status"]


async def _renewed(server: Server) -> bool:
    return (await status(server, "prober"))["renewals"] >= 1


async def test_a_missing_secret_or_bag_is_named_without_values(server: Server) -> None:
    op = server.operator_token()
    create(server, op, probe_spec("lost", [BB, "true"], server.port or 0, secret_id="absent"))
    code, body = run(server, "start", "lost")
    err = body["error"]["message"]
    assert code == 404 and body["error"]["name"] == "not_found"
    assert "container.environment[1] (ROOMSEC)" in err and "'absent'" in err and "'bot'" in err
    no_canary(json.dumps(body))
    state = await status(server, "lost")
    assert state["state"] == "stopped" and state["last_error"]["name"] == "not_found"
    # a missing keys bag is named too
    spec = probe_spec("nobag", [BB, "true"], server.port or 0)
    spec["container"]["secrets"] = ["no-such-bag"]
    create(server, op, spec)
    code, body = run(server, "start", "nobag")
    assert code == 404 and "container.secrets: project keys secret 'no-such-bag' not found" in body["error"]["message"]


async def test_a_crash_restarts_with_backoff_and_stop_ends_it(server: Server) -> None:
    op = server.operator_token()
    spec = {"kind": "Service", "metadata": {"name": "crasher"},
            "container": {"command": [BB, "sh", "-c", "echo up; exit 3"]}}
    create(server, op, spec)
    assert run(server, "start", "crasher")[0] == 200

    async def restarts() -> int:
        return int((await status(server, "crasher"))["restarts"])

    async def three() -> bool:
        return await restarts() >= 3

    await until(three, "three restarts")
    assert any("exited with status 3" in line for line in await logs(server, "crasher"))
    assert run(server, "stop", "crasher")[0] == 200
    settled = await restarts()
    assert (await status(server, "crasher"))["state"] == "stopped"
    assert await restarts() == settled
    # delete stops and removes the spec
    assert api(server, "DELETE", f"/v1/admin/rooms/{ROOM}/services/crasher")[0] == 200
    assert api(server, "GET", f"/v1/admin/rooms/{ROOM}/services/crasher")[1]["error"]["name"] == "not_found"


async def test_only_operators_reach_services_and_refusals_are_audited(server: Server) -> None:
    room_admin = server.token("mallory", ROOM, api=("secrets", "admin"))
    base = f"/v1/admin/rooms/{ROOM}/services"
    async with Http(server, room_admin) as http:
        for method, path, body in (
            ("GET", base, None), ("POST", base, {"yaml": "kind: Service"}), ("GET", f"{base}/prober", None),
            ("DELETE", f"{base}/prober", None), ("POST", f"{base}/prober/start", None),
            ("POST", f"{base}/prober/stop", None), ("GET", f"{base}/prober/status", None),
            ("GET", f"{base}/prober/logs", None),
        ):
            reply = await http.call(method, path, json=body)
            assert reply.error == "permission_denied", (method, path, reply.status)
    async with Http(server, None) as anonymous:
        assert (await anonymous.call("GET", f"{base}/prober/logs")).status == 401
    denied = [a for a in await audit_lines(server, identity="mallory") if a["outcome"] == "denied"]
    assert len(denied) == 8 and {a["channel"] for a in denied} == {"admin"}


async def test_bad_specs_are_refused_with_the_field_path(server: Server) -> None:
    op = server.operator_token()
    bad = "kind: Service\nmetadata: {name: bad}\ncontainer:\n  command: [x]\n  environment:\n    - name: A\n      secret: {identity: bot}\n"
    r = server.cli("service", "create", "--room", ROOM, "--file", "-", token=op, input=bad.encode())
    assert r.returncode == 1 and b"container.environment[0].secret.id: required" in r.stderr
    code, body = api(server, "POST", f"/v1/admin/rooms/{ROOM}/services", {"yaml": "kind: [unclosed\n"})
    assert code == 400 and "spec: not valid YAML at line" in body["error"]["message"]
    r = server.cli("service", "create", "--room", ROOM, "--file", "/nonexistent.yaml", token=op)
    assert r.returncode == 2 and b"nothing was sent" in r.stderr
    listed = cli_json(server, "service", "list", "--room", ROOM)
    assert isinstance(listed, list) and "bad" not in [s["name"] for s in listed]


async def test_autostart_runs_stored_services_when_the_server_starts(make_server, tmp_path) -> None:
    first = make_server(env=SETTINGS, data_dir=tmp_path / "auto")
    op = first.operator_token()
    create(first, op, {"kind": "Service", "metadata": {"name": "early"},
                       "container": {"command": [BB, "sh", "-c", "echo awake; exec /bin/busybox sleep 600"]}})
    first.stop()
    second = make_server(env={**SETTINGS, "ROOMSVC_SERVICES_AUTOSTART": "1"}, data_dir=tmp_path / "auto")

    async def awake() -> bool:
        return "awake" in await logs(second, "early")

    await until(awake, "the stored service started with the server")
    assert (await status(second, "early"))["state"] == "running"
    second.stop()  # the server stops its services on the way out
    assert "sleep 600" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
