"""ServiceTemplate installs: a secret variable becomes a room secret of the annotated
identity and never enters the spec or any log; the rest is rendered in a sandbox."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.services.conftest import ROOM, api
from tests.support.peers import need
from tests.support.server import REPO, Server
from tests.support.waiting import until
from tests.vault.conftest import Http, audit_lines

SECRET = "template-secret-CANARY-5a2c"
BB = "/bin/busybox"

TEMPLATE = """\
version: v1
kind: ServiceTemplate
metadata:
  name: mailer
  description: "sends mail as {{ sender }}"
variables:
  - name: sender
    title: Sender address
    type: email
  - name: mode
    enum: [dev, prod]
    optional: true
  - name: api_key
    title: Mail API key
    obscure: true
    annotations:
      meshagent.secret.id: mail-api-key
      meshagent.secret.identity: mailer-bot
      meshagent.secret.name: Mail API key
      meshagent.secret.type: text/plain
container:
  command: ["/bin/busybox", "sh", "-c", "echo \\"key $(printf '%s\\\\n' \\"$API_KEY\\" | /bin/busybox sha256sum | /bin/busybox cut -c1-64)\\"; echo \\"sender $SENDER\\"; echo \\"leak $API_KEY\\"; exec /bin/busybox sleep 600"]
  environment:
    - name: SENDER
      value: "{{ sender }}"
    - name: MODE
      value: "{{ mode }}"
    - name: API_KEY
      secret: {identity: mailer-bot, id: mail-api-key}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    need(os.path.exists(BB), "busybox-static (/bin/busybox) is not installed")
    srv = Server(tmp_path_factory.mktemp("tpl") / "data", env={"ROOMSVC_SERVICES_RUNNER": "process",
                                                               "ROOMSVC_SERVICES_STOP_TIMEOUT": "2"}).start()
    yield srv
    srv.stop()
    assert SECRET not in srv.stderr()


def install(server: Server, template: str, *values: str) -> tuple[int, str]:
    args = ["service", "install", "-", "--room", ROOM]
    for value in values:
        args += ["--value", value]
    r = server.cli(*args, token=server.operator_token(), input=template.encode())
    return r.returncode, (r.stdout + r.stderr).decode()


async def test_install_stores_the_secret_for_the_annotated_identity_and_never_in_the_spec(server: Server) -> None:
    code, out = install(server, TEMPLATE, "sender=bot@example.com", f"api_key={SECRET}")
    assert code == 0, out
    assert "stored room secrets mailer-bot/mail-api-key" in out and SECRET not in out

    # the room secret belongs to the annotated identity, with the annotated metadata
    async with Http(server, server.token("mailer-bot", ROOM, api=("secrets",))) as owner:
        reply = await owner.call("GET", Http.path(ROOM, "mail-api-key"))
        listing = await owner.call("GET", Http.path(ROOM))
    assert reply.status == 200 and base64.b64decode(reply.body["value_base64"]) == SECRET.encode()
    [meta] = listing.body["secrets"]
    assert (meta["id"], meta["name"], meta["type"]) == ("mail-api-key", "Mail API key", "text/plain")

    shown = server.cli("service", "show", "mailer", "--room", ROOM, token=server.operator_token())
    assert shown.returncode == 0 and SECRET not in shown.stdout.decode()
    spec = json.loads(shown.stdout)["spec"]
    assert spec["kind"] == "Service" and "variables" not in spec
    env = {e["name"]: e for e in spec["container"]["environment"]}
    assert env["SENDER"]["value"] == "bot@example.com" and env["MODE"]["value"] == ""
    assert spec["metadata"]["description"] == "sends mail as bot@example.com"

    # the service gets it through environment[].secret; its own echo of it is masked
    assert server.cli("service", "start", "mailer", "--room", ROOM, token=server.operator_token()).returncode == 0

    async def lines() -> list[str]:
        async with Http(server, server.operator_token()) as http:
            return (await http.call("GET", f"/v1/admin/rooms/{ROOM}/services/mailer/logs")).body["logs"]

    async def reported() -> bool:
        return any(line.startswith("leak ") for line in await lines())

    await until(reported, "the templated service reported")
    out_lines = await lines()
    assert f"key {hashlib.sha256((SECRET + chr(10)).encode()).hexdigest()}" in out_lines
    assert "sender bot@example.com" in out_lines and "leak [hidden]" in out_lines
    assert SECRET not in "\n".join(out_lines)
    assert server.cli("service", "stop", "mailer", "--room", ROOM, token=server.operator_token()).returncode == 0

    stored = [a for a in await audit_lines(server, room=ROOM) if a["secret_id"] == "mail-api-key" and a["action"] == "create"]
    assert [(a["actor"], a["channel"], a["outcome"]) for a in stored] == [("mailer-bot", "install:mailer", "ok")]


async def test_a_template_that_interpolates_a_secret_is_refused_before_anything_is_stored(server: Server) -> None:
    leaky = TEMPLATE.replace("name: mailer\n", "name: leaky\n").replace('value: "{{ mode }}"', 'value: "{{ api_key }}"')
    leaky = leaky.replace("mail-api-key", "leaky-key")
    code, out = install(server, leaky, "sender=bot@example.com", f"api_key={SECRET}")
    assert code == 1 and "'api_key' is undefined" in out and "only non-secret variables" in out and SECRET not in out
    async with Http(server, server.token("mailer-bot", ROOM, api=("secrets",))) as owner:
        assert (await owner.call("GET", Http.path(ROOM, "leaky-key", "/exists"))).body["exists"] is False


async def test_missing_identity_annotation_and_bad_values_are_named(server: Server) -> None:
    no_identity = TEMPLATE.replace("      meshagent.secret.identity: mailer-bot\n", "")
    code, out = install(server, no_identity, "sender=bot@example.com", f"api_key={SECRET}")
    assert code == 2 and "variables[2].annotations.meshagent.secret.identity: required" in out
    async with Http(server, server.operator_token()) as http:  # the server checks it too
        reply = await http.call("POST", f"/v1/admin/rooms/{ROOM}/service-templates",
                                json={"template": no_identity, "values": {"sender": "a@b.c", "api_key": SECRET}})
    assert reply.error == "invalid_request" and "meshagent.secret.identity" in reply.text and SECRET not in reply.text

    other = TEMPLATE.replace("name: mailer\n", "name: other\n")
    for values, named in (({"sender": "not-an-address", "api_key": SECRET}, "variables[0] (sender): must be an email"),
                          ({"sender": "a@b.c", "mode": "staging", "api_key": SECRET}, "variables[1] (mode): must be one of"),
                          ({"sender": "a@b.c"}, "variables[2] (api_key): a value is required"),
                          ({"sender": "a@b.c", "api_key": SECRET, "extra": "x"}, "values.extra: the template has no such")):
        code, body = api(server, "POST", f"/v1/admin/rooms/{ROOM}/service-templates", {"template": other, "values": values})
        assert code == 400 and named in body["error"]["message"] and SECRET not in json.dumps(body), body
    # the CLI finds a missing value before sending anything (no terminal to prompt on)
    code, out = install(server, other, "sender=a@b.c")
    assert code == 2 and "no value for variable 'api_key'" in out


async def test_a_value_cannot_break_out_of_its_string(server: Server) -> None:
    sneaky = 'a@b.c", "pull_secret": "evil'
    template = TEMPLATE.replace("name: mailer\n", "name: quoted\n").replace("    type: email\n", "")
    code, body = api(server, "POST", f"/v1/admin/rooms/{ROOM}/service-templates",
                     {"template": template, "values": {"sender": sneaky, "api_key": SECRET}})
    assert code == 201, body
    shown = api(server, "GET", f"/v1/admin/rooms/{ROOM}/services/quoted")[1]["service"]
    env = {e["name"]: e for e in shown["spec"]["container"]["environment"]}
    assert env["SENDER"]["value"] == sneaky and "pull_secret" not in shown["spec"]["container"]


def test_values_not_given_are_asked_for_and_secret_ones_without_echo(server: Server) -> None:
    """In a terminal (a real pty), the CLI prompts: plain input for a public variable,
    hidden input for an obscure or secret one; the secret is never echoed back."""
    template = TEMPLATE.replace("name: mailer\n", "name: prompted\n").replace("mail-api-key", "prompted-key")
    path = Path(server.data_dir).parent / "prompted.yaml"
    path.write_text(template)
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # the child's own session, with the pty as its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.update({"ROOMSVC_URL": server.url, "ROOMSVC_TOKEN": server.operator_token()})
    proc = subprocess.Popen([sys.executable, "-m", "roomsvc", "service", "install", str(path), "--room", ROOM],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=controlling_terminal, env=env, cwd=REPO)
    os.close(slave)
    transcript = b""

    def read_until(marker: bytes) -> None:
        nonlocal transcript
        deadline = time.monotonic() + 60
        while marker not in transcript:
            assert time.monotonic() < deadline, transcript
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                transcript += os.read(master, 4096)

    try:
        read_until(b"Sender address: ")
        os.write(master, b"bot@example.com\n")
        read_until(b"(optional) [dev/prod]: ")
        os.write(master, b"\n")
        read_until(b"Mail API key: ")
        os.write(master, SECRET.encode() + b"\n")
        read_until(b"installed service 'prompted'")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"bot@example.com" in transcript  # a public value is echoed as typed
    assert SECRET.encode() not in transcript  # a secret one is not
    assert b"stored room secrets mailer-bot/prompted-key" in transcript
