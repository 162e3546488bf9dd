"""The authorization policy end to end: every principal x action x transport.

One real server; four ways in: the native websocket, the MeshAgent protocol (a raw wire
client), HTTP and the ``roomsvc`` CLI (a subprocess). Each cell acts on a fresh secret
that alice owns in room1, delegated to bob, and must give exactly the answer the
hand-written table in tests/domain/test_policy.py gives for that principal and action,
on every transport that offers the action. Effects are checked too: after every cell the
owner's view proves whether the cell changed anything.

MeshAgent's wire has one code (1001) and one refusal status (403) for "denied" and
"unauthenticated" alike, so there the two read as ``denied``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from roomsvc.domain.policy import Action
from roomsvc.domain.secret_requests import requested_secret_id
from roomsvc.transport.meshagent.packing import (
    BinaryContent,
    Content,
    EmptyContent,
    ErrorContent,
    FileContent,
    JsonContent,
    unpack,
)
from tests.domain.test_policy import EXPECTED
from tests.meshagent.raw_client import RawClient
from tests.support.native_client import NativeClient, ResponseError
from tests.support.server import REPO, Server
from tests.support.waiting import until
from tests.vault.conftest import Http

ROOM = "room1"
TRANSPORTS = ("native", "meshagent", "http", "cli")
ALL = set(TRANSPORTS)
#: which transports offer each action (MeshAgent has no header resolution or versions;
#: requests and answers are participant-to-participant, so websocket (and CLI) only)
OFFERED = {
    Action.READ: ALL, Action.USE: ALL - {"meshagent"}, Action.EXISTS: ALL, Action.LIST: ALL, Action.WRITE: ALL,
    Action.DELEGATE: ALL, Action.DELETE: ALL, Action.VERSIONS: ALL - {"meshagent"},
    Action.REQUEST: {"native", "meshagent", "cli"}, Action.ANSWER: {"native", "meshagent"},
}


@dataclass(frozen=True)
class Who:
    identity: str
    room: str | None
    api: dict[str, Any]
    expired: bool = False


PRINCIPALS = {
    "owner": Who("alice", ROOM, {"secrets": {}}),
    "delegate": Who("bob", ROOM, {"secrets": {}}),
    "other": Who("carol", ROOM, {"secrets": {}}),
    "admin": Who("dave", ROOM, {"secrets": {}, "admin": {}}),
    "asked": Who("erin", ROOM, {"secrets": {}}),
    "use_only": Who("alice", ROOM, {"secrets": {"use_only": True}}),
    "no_grant": Who("alice", ROOM, {"admin": {}}),
    "other_room": Who("alice", "room2", {"secrets": {}}),
    "operator": Who("ops", None, {"admin": {}}),
    "expired": Who("alice", ROOM, {"secrets": {}}, expired=True),
}
CELLS = [
    (transport, name, action)
    for name in PRINCIPALS for action in Action for transport in TRANSPORTS if transport in OFFERED[action]
]


def test_every_principal_and_action_of_the_table_is_exercised() -> None:
    assert {(n, a) for _, n, a in CELLS} == set(EXPECTED)


def token_for(server: Server, who: Who) -> str:
    now = int(time.time())
    extra: dict[str, Any] = {"exp": now - 3600, "iat": now - 7200} if who.expired else {}
    from roomsvc.crypto.tokens import mint
    from roomsvc.domain.principal import build_claims

    claims = build_claims(identity=who.identity, room=who.room, api=who.api, issued_at=now, ttl=600)
    claims.update(extra)
    return mint(server.keyring(), claims)


def addressing(name: str, who: Who) -> dict[str, Any]:
    """How this principal names alice's secret: its own when it is alice, else for_identity."""
    return {"delegated_to": "bob", **({} if who.identity == "alice" else {"for_identity": "alice"})}


def header_spec(name: str, sid: str) -> str:
    """The delegate names the owner in the spec; others name alice's namespace with for_identity."""
    return f"X-T:{{alice/{sid}}}" if name == "delegate" else f"X-T:{{{sid}}}"


#: where the resolved header will be sent (use-only tokens must say; plain secrets go anywhere)
DESTINATION = "https://api.example.com/v1"


def use_fields(name: str, who: Who) -> dict[str, Any]:
    owner = {} if name == "delegate" or who.identity == "alice" else {"for_identity": "alice"}
    return {**owner, "destination": DESTINATION}


# -- what one cell answered -----------------------------------------------------------------------


@dataclass
class Answer:
    outcome: str  # ok | denied | unauthenticated | invalid | not_found | error:<name>
    data: Any = None


WORDS = {"permission_denied": "denied", "unauthenticated": "unauthenticated", "invalid_request": "invalid",
         "not_found": "not_found"}
MESH_CODES = {1001: "denied", 1002: "invalid", 1003: "not_found"}


def word(name: str) -> str:
    return WORDS.get(name, f"error:{name}")


def mesh_answer(content: Content) -> Answer:
    if isinstance(content, ErrorContent):
        return Answer(MESH_CODES.get(content.code or 0, f"error:{content.code}"), content.text)
    return Answer("ok", content)


class Refused(Exception):
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome


async def connect_native(stack: AsyncExitStack, server: Server, token: str, room: str) -> NativeClient:
    session = await stack.enter_async_context(aiohttp.ClientSession())
    try:
        client = await NativeClient.connect(server.ws_url(room), token, session=session)
    except aiohttp.WSServerHandshakeError as exc:
        raise Refused({401: "unauthenticated", 403: "denied"}.get(exc.status, f"error:{exc.status}")) from None
    stack.push_async_callback(client.close)
    return client


async def connect_mesh(stack: AsyncExitStack, server: Server, token: str, room: str) -> RawClient:
    try:
        client = await RawClient.connect(server.url, room, token)
    except aiohttp.WSServerHandshakeError as exc:
        raise Refused({401: "denied", 403: "denied"}.get(exc.status, f"error:{exc.status}")) from None
    stack.push_async_callback(client.close)
    return client


async def run_cli(server: Server, token: str, *args: str, timeout: float = 60) -> Answer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.update({"ROOMSVC_URL": server.url, "ROOMSVC_TOKEN": token})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roomsvc", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode == 0:
        return Answer("ok", out.decode())
    found = re.search(r"error \[(\w+)\]", err.decode())
    return Answer(word(found.group(1)) if found else f"error:exit {proc.returncode}: {err.decode()[-300:]}")


def cli_addressing(address: dict[str, Any]) -> list[str]:
    out = []
    for key, value in address.items():
        out += [f"--{key.replace('_', '-')}", value]
    return out


# -- the cells ---------------------------------------------------------------------------------------


class Cell:
    def __init__(self, server: Server, transport: str, name: str, action: Action) -> None:
        self.server, self.transport, self.name, self.action = server, transport, name, action
        self.who = PRINCIPALS[name]
        self.token = token_for(server, self.who)
        self.sid = f"mx-{transport}-{name}-{action.value}".replace("_", "-")
        self.original = f"original-{uuid.uuid4().hex}"
        self.new = f"changed-{uuid.uuid4().hex}"
        self.address = addressing(name, self.who)

    async def perform(self, stack: AsyncExitStack, helpers: "Helpers | None") -> Answer:
        try:
            if self.transport == "http":
                return await self.http()
            if self.transport == "cli":
                return await self.cli(helpers)
            if self.transport == "native":
                return await self.native(stack, helpers)
            return await self.meshagent(stack, helpers)
        except Refused as refused:
            return Answer(refused.outcome)

    # -- HTTP -------------------------------------------------------------------------------------

    async def http(self) -> Answer:
        async with Http(self.server, self.token) as http:
            a, sid = self.address, self.sid
            if self.action is Action.READ:
                reply = await http.get(ROOM, sid, **a)
            elif self.action is Action.USE:
                body = {"header_secrets": [header_spec(self.name, sid)], **use_fields(self.name, self.who)}
                reply = await http.call("POST", f"/v1/rooms/{ROOM}/headers", json=body)
            elif self.action is Action.EXISTS:
                reply = await http.exists(ROOM, sid, **a)
            elif self.action is Action.LIST:
                reply = await http.list(ROOM, for_identity=a.get("for_identity"))
            elif self.action is Action.WRITE:
                reply = await http.set(ROOM, sid, self.new, **a)
            elif self.action is Action.DELEGATE:
                reply = await http.set(ROOM, sid + "-d", self.new, **{**a, "delegated_to": "frank"})
            elif self.action is Action.DELETE:
                reply = await http.delete(ROOM, sid, **a)
            else:
                reply = await http.versions(ROOM, sid, **a)
        if reply.error:
            return Answer(word(reply.error))
        body = reply.body
        if self.action is Action.READ:
            return Answer("ok", base64.b64decode(body["value_base64"]).decode())
        if self.action is Action.USE:
            return Answer("ok", body["headers"][0]["value"])
        if self.action is Action.EXISTS:
            return Answer("ok" if body["exists"] else "not_found")
        if self.action is Action.LIST:
            return Answer("ok", [s["id"] for s in body["secrets"]])
        return Answer("ok", body)

    # -- CLI --------------------------------------------------------------------------------------

    async def cli(self, helpers: Any) -> Answer:
        a, sid = self.address, self.sid
        base = ["--room", ROOM]
        if self.action is Action.READ:
            return await run_cli(self.server, self.token, "room", "secret", "get", *base, "--id", sid, *cli_addressing(a))
        if self.action is Action.USE:
            extra = cli_addressing(use_fields(self.name, self.who))
            answer = await run_cli(self.server, self.token, "toolkit", "headers", *base, "--header-secret",
                                   header_spec(self.name, sid), *extra)
            if answer.outcome == "ok":
                answer.data = json.loads(answer.data)["X-T"]
            return answer
        if self.action is Action.EXISTS:
            answer = await run_cli(self.server, self.token, "room", "secret", "exists", *base, "--id", sid, *cli_addressing(a))
            if answer.outcome == "ok" and answer.data.strip() == "false":
                return Answer("not_found")
            return answer
        if self.action is Action.LIST:
            extra = ["--for-identity", a["for_identity"]] if "for_identity" in a else []
            answer = await run_cli(self.server, self.token, "room", "secret", "list", *base, *extra)
            if answer.outcome == "ok":
                answer.data = [s["id"] for s in json.loads(answer.data)]
            return answer
        if self.action is Action.WRITE:
            return await run_cli(self.server, self.token, "room", "secret", "set", *base, "--id", sid, "--text", self.new,
                                 *cli_addressing(a))
        if self.action is Action.DELEGATE:
            return await run_cli(self.server, self.token, "room", "secret", "set", *base, "--id", sid + "-d", "--text",
                                 self.new, *cli_addressing({**a, "delegated_to": "frank"}))
        if self.action is Action.DELETE:
            return await run_cli(self.server, self.token, "room", "secret", "delete", sid, *base, *cli_addressing(a))
        if self.action is Action.VERSIONS:
            return await run_cli(self.server, self.token, "room", "secret", "versions", *base, "--id", sid, *cli_addressing(a))
        assert self.action is Action.REQUEST
        return await run_cli(self.server, self.token, "room", "secret", "request", *base, "--from-participant-id",
                             helpers.provider.participant_id, "--secret-url", self.request_url, "--type", "text/plain",
                             "--delegate-to", "frank", "--timeout", "20")

    @property
    def request_url(self) -> str:
        return f"secret://{self.sid}"

    # -- native websocket ---------------------------------------------------------------------------

    async def native(self, stack: AsyncExitStack, helpers: Any) -> Answer:
        client = await connect_native(stack, self.server, self.token, ROOM)
        a, sid = self.address, self.sid
        if self.action is Action.ANSWER:
            helpers.sources.append(native_pushes(client))  # this principal may be the one asked
            return await self.answer(helpers, client.participant_id, self.native_provide(client))
        requests = {
            Action.READ: ("secrets.get", {"id": sid, **a}),
            Action.USE: ("headers.resolve", {"header_secrets": [header_spec(self.name, sid)], **use_fields(self.name, self.who)}),
            Action.EXISTS: ("secrets.exists", {"id": sid, **a}),
            Action.LIST: ("secrets.list", {"for_identity": a["for_identity"]} if "for_identity" in a else {}),
            Action.WRITE: ("secrets.set", {"id": sid, "text": self.new, **a}),
            Action.DELEGATE: ("secrets.set", {"id": sid + "-d", "text": self.new, **{**a, "delegated_to": "frank"}}),
            Action.DELETE: ("secrets.delete", {"id": sid, **a}),
            Action.VERSIONS: ("secrets.versions", {"id": sid, **a}),
        }
        if self.action is Action.REQUEST:
            requests[Action.REQUEST] = ("secrets.request_secret", {
                "url": self.request_url, "type": "text/plain", "timeout": 20,
                "from_participant_id": helpers.provider.participant_id, "delegate_to": "frank",
            })
        kind, data = requests[self.action]
        try:
            result = await client.request(kind, data, timeout=30)
        except ResponseError as exc:
            return Answer(word(exc.name), exc.message)
        if self.action is Action.READ:
            return Answer("ok", base64.b64decode(result["value"]).decode())
        if self.action is Action.USE:
            return Answer("ok", result["headers"][0]["value"])
        if self.action is Action.EXISTS:
            return Answer("ok" if result["exists"] else "not_found")
        if self.action is Action.LIST:
            return Answer("ok", [s["id"] for s in result["secrets"]])
        return Answer("ok", result)

    def native_provide(self, client: NativeClient) -> Any:
        async def provide(request_id: str) -> Answer:
            try:
                await client.request("secrets.provide_secret", {"request_id": request_id, "text": self.new})
            except ResponseError as exc:
                return Answer(word(exc.name))
            return Answer("ok")
        return provide

    # -- MeshAgent ------------------------------------------------------------------------------------

    async def meshagent(self, stack: AsyncExitStack, helpers: Any) -> Answer:
        client = await connect_mesh(stack, self.server, self.token, ROOM)
        a, sid = self.address, self.sid
        if self.action is Action.ANSWER:
            helpers.sources.append(mesh_pushes(client))  # this principal may be the one asked
            return await self.answer(helpers, client.participant_id, self.mesh_provide(client))
        if self.action is Action.READ:
            content = await client.invoke("secrets", "get_secret", JsonContent({"secret_id": sid, **a}))
            if isinstance(content, EmptyContent):
                return Answer("not_found")
            answer = mesh_answer(content)
            if isinstance(content, FileContent):
                answer.data = content.data.decode()
            return answer
        if self.action is Action.EXISTS:
            answer = mesh_answer(await client.invoke("secrets", "exists", JsonContent({"secret_id": sid, **a})))
            if answer.outcome == "ok" and not answer.data.json["exists"]:
                return Answer("not_found")
            return answer
        if self.action is Action.LIST:
            body = {"for_identity": a["for_identity"]} if "for_identity" in a else {}
            answer = mesh_answer(await client.invoke("secrets", "list_secrets", JsonContent(body)))
            if answer.outcome == "ok":
                answer.data = [s["id"] for s in answer.data.json["secrets"]]
            return answer
        if self.action in (Action.WRITE, Action.DELEGATE):
            headers = {"secret_id": sid, **a, "has_data": True}
            if self.action is Action.DELEGATE:
                headers.update(secret_id=sid + "-d", delegated_to="frank")
            return mesh_answer(await client.invoke("secrets", "set_secret", BinaryContent(headers, self.new.encode())))
        if self.action is Action.DELETE:
            return mesh_answer(await client.invoke("secrets", "delete_secret", JsonContent({"id": sid, **a})))
        assert self.action is Action.REQUEST
        content = await client.invoke("secrets", "request_secret", JsonContent({
            "url": self.request_url, "type": "text/plain", "participant_id": helpers.provider.participant_id,
            "timeout": 20, "delegate_to": "frank",
        }))
        answer = mesh_answer(content)
        if isinstance(content, FileContent):
            answer.data = content.data.decode()
        return answer

    def mesh_provide(self, client: RawClient) -> Any:
        async def provide(request_id: str) -> Answer:
            content = await client.invoke("secrets", "provide_secret", BinaryContent({"request_id": request_id}, self.new.encode()))
            return mesh_answer(content)
        return provide

    # -- answering a request -------------------------------------------------------------------------

    async def answer(self, helpers: "Helpers", my_participant: str, provide: Any) -> Answer:
        """The asker asks erin (this principal's own participant when it is erin); this
        principal tries to provide the answer."""
        asked_self = self.name == "asked"
        target = my_participant if asked_self else helpers.erin.participant_id
        asking = asyncio.get_running_loop().create_task(helpers.asker.request("secrets.request_secret", {
            "url": self.request_url, "type": "text/plain", "from_participant_id": target, "timeout": 20,
        }, timeout=30))
        request_id = await helpers.request_id_for(self.request_url)
        answer = await provide(request_id)
        if answer.outcome != "ok":
            # the participant asked declines, so the asker is not left waiting
            await helpers.erin.request("secrets.reject_secret", {"request_id": request_id, "error": "cleanup"})
        try:
            answer.data = base64.b64decode((await asking)["value"]).decode()
        except ResponseError as exc:
            answer.data = exc.name
        return answer


class Helpers:
    """Participants the request and answer cells need: ``provider`` answers every request
    sent to it; ``asker`` asks; ``erin`` is the identity asked (pushes are collected from
    every participant of identity erin, whatever the transport)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._stack = AsyncExitStack()
        #: functions that look for a request push among one participant's events
        self.sources: list[Any] = []

    async def __aenter__(self) -> "Helpers":
        self.provider = await self._native("helper")
        self.asker = await self._native("asker")
        self.erin = await self._native("erin")
        self.sources.append(native_pushes(self.erin))
        self._tasks = [asyncio.get_running_loop().create_task(self._provide_all())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await self._stack.aclose()

    async def _native(self, identity: str) -> NativeClient:
        return await connect_native(self._stack, self.server, self.server.token(identity, ROOM, api=("secrets",)), ROOM)

    async def _provide_all(self) -> None:
        while True:
            push = await self.provider.next_event("secrets.request_secret", timeout=3600)
            await self.provider.request("secrets.provide_secret", {"request_id": push["data"]["request_id"],
                                                                   "text": "provided-" + push["data"]["request"]["url"]})

    async def request_id_for(self, url: str) -> str:
        """The id of the request for ``url``, from whichever participant of erin's got it."""
        found: list[str] = []

        def pushed() -> bool:
            found.extend(filter(None, (source(url) for source in self.sources)))
            return bool(found)

        await until(pushed, f"a request push for {url}", within=10)
        return found[0]


def native_pushes(client: NativeClient) -> Any:
    seen: dict[str, str] = {}

    def find(url: str) -> str | None:
        while not client.events.empty():
            event = client.events.get_nowait()
            if event.get("type") == "secrets.request_secret":
                seen[event["data"]["request"]["url"]] = event["data"]["request_id"]
        return seen.get(url)
    return find


def mesh_pushes(client: RawClient) -> Any:
    seen: dict[str, str] = {}

    def find(url: str) -> str | None:
        while not client.pushes.empty():
            message = client.pushes.get_nowait()
            if message.type == "secrets.request_secret":
                header = unpack(message.payload)[0]
                seen[header["request"]["url"]] = header["request_id"]
        return seen.get(url)
    return find


# -- the test --------------------------------------------------------------------------------------


def expected_for(transport: str, name: str, action: Action) -> str:
    outcome = EXPECTED[(name, action)].value
    if transport == "meshagent" and outcome == "unauthenticated":
        return "denied"
    return outcome


@pytest.mark.parametrize(("transport", "name", "action"), CELLS, ids=[f"{t}-{n}-{a.value}" for t, n, a in CELLS])
async def test_cell(server: Server, transport: str, name: str, action: Action) -> None:
    cell = Cell(server, transport, name, action)
    async with Http(server, server.token("alice", ROOM, api=("secrets",))) as owner, \
            Http(server, server.token("dave", ROOM, api=("secrets", "admin"))) as admin:
        assert (await owner.set(ROOM, cell.sid, cell.original, delegated_to="bob")).status == 200
        async with AsyncExitStack() as stack:
            helpers = None
            if action in (Action.REQUEST, Action.ANSWER):
                helpers = await stack.enter_async_context(Helpers(server))
            answer = await cell.perform(stack, helpers)
        expected = expected_for(transport, name, action)
        assert answer.outcome == expected, (answer, expected)

        # what the owner (or, for requests, an admin) sees afterwards proves what the cell did
        after = await owner.value(ROOM, cell.sid, delegated_to="bob")
        ok = expected == "ok"
        assert after == (cell.new.encode() if ok and action is Action.WRITE else
                         None if ok and action is Action.DELETE else cell.original.encode())
        delegated = await owner.value(ROOM, cell.sid + "-d", delegated_to="frank")
        assert delegated == (cell.new.encode() if ok and action is Action.DELEGATE else None)
        if action in (Action.READ, Action.USE) and ok:
            assert cell.original in answer.data
        if action is Action.LIST and ok:
            assert cell.sid in answer.data
        if action is Action.REQUEST:
            stored = await admin.value(ROOM, requested_secret_id(cell.request_url, "text/plain"),
                                       for_identity=cell.who.identity, delegated_to="frank")
            assert stored == (f"provided-{cell.request_url}".encode() if ok else None)
        if action is Action.ANSWER:
            # the asker got the principal's value only when the principal was the one asked
            assert (answer.data == cell.new) is ok, answer
