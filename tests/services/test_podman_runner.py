"""Room services as podman containers, pulled from a real registry with a pull secret.

The acceptance cases of issue 13: a spec with a literal, a room secret, a project keys
bag, a minted token and a pull secret runs as a container pulled from the local
registry; the probe inside proves by hashes what arrived, that its token authenticates,
and that the pull secret did not arrive. A pull without the secret is refused, and a bad
password is reported as such, without the password.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.services.conftest import (
    BAG_A,
    BAG_B,
    LITERAL,
    PULL_PASSWORD,
    ROOM,
    ROOM_SECRET,
    create,
    digest,
    hashes,
    no_canary,
    probe_script,
    probe_spec,
    seed_vault,
)
from tests.services.registry import Podman, Registry, available, build_and_push, make_podman, start_registry
from tests.support.peers import need
from tests.support.server import Server
from tests.support.waiting import until
from tests.vault.conftest import Http

USER = "puller"
BAD_PASSWORD = "wrong-PASSWORD-CANARY-0b7e"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    ok, reason = available()
    need(ok, reason)
    reg = start_registry(tmp_path_factory.mktemp("registry"), USER, PULL_PASSWORD)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def podman(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return make_podman(tmp_path_factory.mktemp("podman"), registry.host)


@pytest.fixture(scope="module")
def image(registry: Registry, podman: Podman, tmp_path_factory: pytest.TempPathFactory):
    remote = build_and_push(podman, registry, tmp_path_factory.mktemp("image"), "probe")
    yield remote
    podman.run("rm", "--force", "--filter", "label=roomsvc.room=" + ROOM, check=False)
    podman.run("rmi", "--force", remote, check=False)


@pytest.fixture(scope="module")
def server(registry: Registry, image: str, tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tmp_path_factory.mktemp("podsvc") / "data", env={
        "ROOMSVC_SERVICES_RUNNER": "podman",
        "ROOMSVC_SERVICES_INSECURE_REGISTRIES": registry.host,
        # the probe calls roomsvc on 127.0.0.1
        "ROOMSVC_SERVICES_PODMAN_NETWORK": "host",
        "ROOMSVC_SERVICES_BACKOFF_INITIAL": "0.2",
        "ROOMSVC_SERVICES_STOP_TIMEOUT": "2",
    }).start()
    op = srv.operator_token()
    seed_vault(srv, op)
    for secret_id, password in (("registry", PULL_PASSWORD), ("bad-registry", BAD_PASSWORD)):
        r = srv.cli("secret", "pull", "create", "--id", secret_id, "--server", registry.host, "--username", USER,
                    "--password", "-", token=op, input=f"{password}\n".encode())
        assert r.returncode == 0, r.stderr
    yield srv
    srv.stop()
    no_canary(srv.stderr())
    assert BAD_PASSWORD not in srv.stderr()


async def logs(server: Server, name: str) -> list[str]:
    async with Http(server, server.operator_token()) as http:
        reply = await http.call("GET", f"/v1/admin/rooms/{ROOM}/services/{name}/logs")
    assert reply.status == 200, reply.text
    return reply.body["logs"]


async def test_a_full_spec_runs_as_a_container_pulled_with_the_pull_secret(server: Server, image: str, podman: Podman) -> None:
    op = server.operator_token()
    spec = probe_spec("podprobe", ["/bin/sh", "-c", probe_script("/bin/busybox")], server.port or 0, image=image,
                      pull_secret="registry")
    create(server, op, spec)
    started = server.cli("service", "start", "podprobe", "--room", ROOM, token=op, timeout=300)
    assert started.returncode == 0, started.stderr
    no_canary(started.stderr)

    async def reported() -> bool:
        return any(line.startswith("auth ") for line in await logs(server, "podprobe"))

    await until(reported, "the probe in the container reported", within=60)
    lines = await logs(server, "podprobe")
    got = hashes(lines)
    assert got["LIT"] == digest(LITERAL) and got["ROOMSEC"] == digest(ROOM_SECRET)
    assert got["BAG_A"] == digest(BAG_A) and got["BAG_B"] == digest(BAG_B)
    assert digest(PULL_PASSWORD) not in got.values()  # the pull secret never arrived
    names = set(next(line for line in lines if line.startswith("names ")).split()[1:])
    # the resolved environment, plus what podman and busybox sh set in every container
    assert names - {"PWD", "SHLVL", "PATH", "HOME", "HOSTNAME", "TERM", "container"} == {
        "LIT", "ROOMSEC", "ROOM_TOKEN", "RS_PORT", "BAG_A", "BAG_B"}
    assert "auth ok" in lines and "shouting [hidden]" in lines
    no_canary("\n".join(lines))

    # neither ps nor podman inspect shows a value (not even the literal)
    status = json.loads(server.cli("service", "status", "podprobe", "--room", ROOM, token=op).stdout)
    assert status["state"] == "running" and status["runner"] == "podman"
    inspect = podman.run("inspect", status["id"]).stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    for text in (inspect, ps):
        no_canary(text)
        assert LITERAL not in text
    # the pull's credential file lived only for the pull
    state = Path(server.data_dir) / "services" / "podman"
    assert sorted(p.name for p in state.iterdir()) == ["containers.conf", "registries.conf"]

    assert server.cli("service", "stop", "podprobe", "--room", ROOM, token=op, timeout=60).returncode == 0
    left = podman.run("ps", "--all", "--quiet", "--filter", "label=roomsvc.service=podprobe").stdout
    assert left.strip() == ""  # --rm: the stopped container is gone


async def test_a_pull_without_the_secret_is_refused_and_a_bad_password_is_named_without_it(server: Server, image: str) -> None:
    op = server.operator_token()
    for name, pull_secret in (("nosecret", None), ("badpass", "bad-registry")):
        spec = {"kind": "Service", "metadata": {"name": name},
                "container": {"image": image, "command": ["/bin/sh", "-c", "echo should-not-run"],
                              **({"pull_secret": pull_secret} if pull_secret else {})}}
        create(server, op, spec)
    refused = server.cli("service", "start", "nosecret", "--room", ROOM, token=op, timeout=300)
    assert refused.returncode == 1
    assert b"error [pull_refused]" in refused.stderr and b"requires credentials" in refused.stderr
    bad = server.cli("service", "start", "badpass", "--room", ROOM, token=op, timeout=300)
    err = bad.stderr.decode()
    assert bad.returncode == 1 and "error [pull_refused]" in err
    assert "refused the credentials of pull secret 'bad-registry'" in err and "bad username or password" in err
    assert BAD_PASSWORD not in err
    status = json.loads(server.cli("service", "status", "badpass", "--room", ROOM, token=op).stdout)
    assert status["state"] == "stopped" and status["last_error"]["name"] == "pull_refused"
    assert BAD_PASSWORD not in json.dumps(status) and BAD_PASSWORD not in "\n".join(await logs(server, "badpass"))
