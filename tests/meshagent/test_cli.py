"""The real ``meshagent`` CLI 0.44 against roomsvc, and the connect endpoint it calls first.

``meshagent room secret ...`` asks ``POST /accounts/projects/{project}/rooms/{room}/connect``
for a room token with the API key as Bearer, then connects to ``/rooms/{room}``.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.meshagent.sdk_peer import MESHAGENT_CLI, need_sdk, sdk_env
from tests.support.server import Server

ROOM = "cli-room"


@pytest.fixture(scope="module")
def api_key(server: Server) -> str:
    return server.cli("apikey", "--data-dir", str(server.data_dir)).stdout.decode().strip()


def connect_url(server: Server, project: str, room: str = ROOM) -> str:
    return f"{server.url}/accounts/projects/{project}/rooms/{room}/connect"


async def test_connect_mints_an_operator_room_token_for_the_api_key(server: Server, api_key: str) -> None:
    project = server.keyring().project_id
    async with aiohttp.ClientSession() as http:
        async with http.post(connect_url(server, project), json={}, headers={"Authorization": f"Bearer {api_key}"}) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
            info = await r.json()
    assert info["room_name"] == ROOM and info["project_id"] == project
    assert info["room_url"] == f"ws://127.0.0.1:{server.port}/rooms/{ROOM}"
    claims = json.loads(base64.urlsafe_b64decode(info["jwt"].split(".")[1] + "=="))
    assert claims["name"] == "operator" and claims["sub"] == project
    assert {"name": "room", "scope": ROOM} in claims["grants"]
    assert {"name": "api", "scope": {"secrets": {}, "admin": {}, "messaging": {}}} in claims["grants"]


@pytest.mark.parametrize("case, status", [("no_key", 401), ("other_key", 401), ("token_not_key", 401), ("project", 404)])
async def test_connect_refusals(server: Server, api_key: str, case: str, status: int) -> None:
    project = server.keyring().project_id
    forged = "-".join(api_key.split("-", 3)[:3]) + "-" + "A" * 43  # right ids, wrong secret
    bearer = {"no_key": None, "other_key": forged, "token_not_key": server.token("x", ROOM), "project": api_key}[case]
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(connect_url(server, "nope" if case == "project" else project), json={}, headers=headers) as r:
            assert r.status == status
            body = await r.json()
    if case == "project":
        assert project in body["error"]["message"]  # the key holder learns the id to use


def test_meshagent_cli_sets_gets_and_lists_room_secrets(server: Server, api_key: str, tmp_path: Path) -> None:
    need_sdk()
    env = sdk_env(
        HOME=str(tmp_path),  # no developer profile can redirect the CLI
        MESHAGENT_API_KEY=api_key, MESHAGENT_API_URL=server.url, MESHAGENT_DISABLE_VERSION_CHECK="1",
    )
    where = ["--project-id", server.keyring().project_id, "--room", ROOM]

    def cli(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(MESHAGENT_CLI), "room", "secret", *args, *where], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    stored = cli("set", "--id", "deploy-key", "--type", "text/plain", "--text", "s3cret-value")
    out, err = stored.communicate(timeout=60)
    assert stored.returncode == 0, err
    get, listing = cli("get", "--id", "deploy-key"), cli("list")  # both at once: each start costs ~2 s
    (got, got_err), (listed, list_err) = get.communicate(timeout=60), listing.communicate(timeout=60)
    assert get.returncode == 0 and got == "s3cret-value", got_err
    assert "mime_type=text/plain" in got_err
    assert listing.returncode == 0, list_err
    assert json.loads(listed) == [
        {"id": "deploy-key", "type": "text/plain", "name": "deploy-key", "delegated_to": None, "agent_id": None},
    ]
    log = server.stderr()
    assert "s3cret-value" not in log and api_key not in log
