"""request_secret / provide_secret / reject_secret between participants, and the CLI
commands a person (``roomsvc room listen``) or a script uses to take part."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from typing import Any

import aiohttp

from roomsvc.domain.secret_requests import requested_secret_id
from tests.oauth.conftest import OAuthEnv, _token_with_api
from tests.oauth.flows import consent, error_of, finish, open_link
from tests.support.server import REPO


async def _ask(agent: Any, person: Any, **extra: Any) -> tuple[asyncio.Task[dict[str, Any]], dict[str, Any]]:
    data = {"url": "secret://db", "type": "text/plain", "from_participant_id": person.participant_id, "timeout": 10, **extra}
    task = asyncio.get_running_loop().create_task(agent.request("secrets.request_secret", data, timeout=20))
    push = await person.next_event("secrets.request_secret")
    return task, push["data"]


async def test_a_provided_secret_is_returned_and_stored_for_the_requester(oauth_env: OAuthEnv) -> None:
    agent_id, person_id, other_id = oauth_env.ids("agent", "olga", "other")
    agent = await oauth_env.connect(agent_id, role="agent")
    person = await oauth_env.connect(person_id)
    other = await oauth_env.connect(other_id)
    try:
        task, push = await _ask(agent, person)
        assert push["request"] == {"url": "secret://db", "type": "text/plain", "participant_id": person.participant_id,
                                   "timeout": 10, "delegate_to": None}
        assert push["from"]["identity"] == agent_id
        # only the participant asked may answer
        assert await error_of(other.request("secrets.provide_secret", {"request_id": push["request_id"], "text": "evil"})) \
            == "permission_denied"
        await person.request("secrets.provide_secret", {"request_id": push["request_id"], "text": "hunter2"})
        result = await task
        assert base64.b64decode(result["value"]) == b"hunter2"
        secret_id = requested_secret_id("secret://db", "text/plain")
        assert result["secret"]["id"] == secret_id and result["secret"]["owner"] == agent_id
        stored = await agent.request("secrets.get", {"id": secret_id})
        assert base64.b64decode(stored["value"]) == b"hunter2"
        # answering again finds nothing
        assert await error_of(person.request("secrets.provide_secret", {"request_id": push["request_id"], "text": "x"})) \
            == "not_found"
        deleted = await agent.request("secrets.delete_requested_secret", {"url": "secret://db", "type": "text/plain"})
        assert deleted == {"deleted": secret_id}
        assert not (await agent.request("secrets.exists", {"id": secret_id}))["exists"]
    finally:
        for c in (agent, person, other):
            await c.close()


async def test_delegate_to_stores_the_answer_for_the_requester_delegated_to_the_named_one(oauth_env: OAuthEnv) -> None:
    agent_id, person_id, worker_id = oauth_env.ids("agent", "pia", "worker")
    agent = await oauth_env.connect(agent_id, role="agent")
    person = await oauth_env.connect(person_id)
    worker = await oauth_env.connect(worker_id)
    try:
        task, push = await _ask(agent, person, delegate_to=worker_id, type="git")
        await person.request("secrets.provide_secret", {
            "request_id": push["request_id"], "value": base64.b64encode(b'{"username":"u","password":"p"}').decode()})
        result = await task
        # the requester's own secret, delegated to the worker: never written into the worker's namespace
        assert (result["secret"]["owner"], result["secret"]["delegated_to"]) == (agent_id, worker_id)
        secret_id = requested_secret_id("secret://db", "git")
        got = await worker.request("secrets.get", {"id": secret_id, "delegated_to": worker_id})
        assert base64.b64decode(got["value"]) == b'{"username":"u","password":"p"}'
        # the worker's own lookup of that id finds nothing of its own
        assert (await worker.request("secrets.exists", {"id": secret_id}))["exists"] is False
    finally:
        for c in (agent, person, worker):
            await c.close()


async def test_a_rejected_request_and_a_timeout_end_with_typed_errors(oauth_env: OAuthEnv) -> None:
    async with oauth_env.agent_and_person("quinn") as (agent_id, person_id, agent, person):
        task, push = await _ask(agent, person)
        await person.request("secrets.reject_secret", {"request_id": push["request_id"], "error": "cancelled"})
        assert await error_of(task) == "rejected"
        task, push = await _ask(agent, person, timeout=0.3)
        assert await error_of(task) == "timeout"
        ended = await person.next_event("secrets.request_ended")
        assert ended["data"] == {"request_id": push["request_id"], "outcome": "timeout"}
        assert not (await agent.request("secrets.list"))["secrets"]


# -- the CLI -----------------------------------------------------------------------------------------


async def _cli(oauth_env: OAuthEnv, token: str, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.update(ROOMSVC_URL=oauth_env.server.url, ROOMSVC_TOKEN=token, PYTHONUNBUFFERED="1")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roomsvc", *args, cwd=REPO, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def _line_with(proc: asyncio.subprocess.Process, text: str) -> str:
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        assert line, f"output ended before {text!r}"
        if text in line:
            return line.strip()


async def _listen(oauth_env: OAuthEnv, identity: str, *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    token = _token_with_api(oauth_env.server, identity, "room1", "user", {"secrets": {}})
    proc = await _cli(oauth_env, token, "room", "listen", "--room", "room1", *extra)
    joined = await _line_with(proc, "joined room")
    return proc, joined.split(" as participant ")[1].split()[0]


async def test_room_listen_answers_a_secret_request(oauth_env: OAuthEnv) -> None:
    agent_id, person_id = oauth_env.ids("agent", "rita")
    proc, participant_id = await _listen(oauth_env, person_id, "--exit-after", "1")
    agent = await oauth_env.connect(agent_id, role="agent")
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"p\ns3cret value\n")
        await proc.stdin.drain()
        result = await agent.request("secrets.request_secret", {
            "url": "secret://api", "from_participant_id": participant_id, "timeout": 15}, timeout=20)
        assert base64.b64decode(result["value"]) == b"s3cret value"
        out, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()
        assert b"secret://api" in out and b"s3cret value" not in out + err
    finally:
        await agent.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_room_secret_request_and_room_secret_oauth_print_what_they_got(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    agent_id, person_id = oauth_env.ids("agent", "sara")
    agent_token = _token_with_api(oauth_env.server, agent_id, "room1", "agent", {"secrets": {}})
    listen, participant_id = await _listen(oauth_env, person_id, "--exit-after", "2")
    assert listen.stdin is not None
    try:
        # a plain secret, answered at the listen prompt
        listen.stdin.write(b"p\nfrom-the-cli\n")
        await listen.stdin.drain()
        req = await _cli(oauth_env, agent_token, "room", "secret", "request", "--room", "room1",
                         "--from-participant-id", participant_id, "--secret-url", "secret://cli", "--timeout", "15")
        out, err = await asyncio.wait_for(req.communicate(), 30)
        assert req.returncode == 0, err.decode()
        assert out == b"from-the-cli" and b"stored as" in err
        # an OAuth token: listen prints the consent link, the person opens it in a browser
        oauth = await _cli(oauth_env, agent_token, "room", "secret", "oauth", "--room", "room1",
                           "--connector", "oidc", "--from-participant-id", participant_id, "--timeout", "30")
        link = (await _line_with(listen, "/oauth/start?t="))
        listen.stdin.write(b"\n")
        await listen.stdin.drain()
        status, _ = await finish(browser, await consent(browser, await open_link(browser, link), person_id))
        assert status == 200
        out, err = await asyncio.wait_for(oauth.communicate(), 30)
        assert oauth.returncode == 0, err.decode()
        token = out.decode().strip()
        assert (await oauth_env.userinfo(token)) == (200, {"sub": person_id})
        assert person_id in err.decode()
        await asyncio.wait_for(listen.wait(), 15)
        assert listen.returncode == 0
    finally:
        if listen.returncode is None:
            listen.kill()
            await listen.wait()
