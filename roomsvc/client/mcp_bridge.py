"""The MCP bridge: a toolkit participant that lets a room's participants list and call the
tools of a remote MCP server, with OAuth handled by roomsvc (issue 17, docs/mcp.md).

Participants reach it with the native ``call``: method ``tools.list`` (body ``{}``) answers
``{"tools": [...]}``; method ``tools.call`` (body ``{"name", "arguments"}``) answers the
MCP ``CallToolResult`` exactly as the server sent it (``isError`` true for a tool error).

Whose credential: the person named by ``--for-identity``, else the calling participant
when it is a person (role ``user``). The bridge asks roomsvc for that person's token for
the MCP server (``secrets.get_offline_oauth_token`` with ``mcp``), and when there is none,
or the server answers 401 / ``insufficient_scope``, asks the person to consent through the
room (``secrets.request_oauth_token``); roomsvc discovers the authorization server,
registers, runs the consent and keeps and refreshes the credential. The bridge keeps the
token in memory only, sends it only to the MCP server, and never puts it in an answer.
One token fetch per person at a time (single-flight); roomsvc's refresh is single-flight too.

The MCP protocol itself is :class:`roomsvc.integrations.mcp_client.McpUpstream` (the
official SDK), handed in by the CLI: this module only speaks the room's wire protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Protocol
from urllib.parse import urlsplit, urlunsplit

from roomsvc.client.room import RoomConnection
from roomsvc.errors import InvalidRequest, NotFound, PermissionDenied, ReauthRequired, RoomsvcError

log = logging.getLogger("roomsvc.mcp.bridge")

#: a token this close to its expiry is fetched again (roomsvc refreshes it)
EXPIRY_MARGIN = 5.0


def shown_url(url: str) -> str:
    """The MCP URL as others may see it: no query (some servers take a key there), no user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Upstream(Protocol):
    """:class:`roomsvc.integrations.mcp_client.McpUpstream`. A refusal for want of
    authorization raises a :class:`~roomsvc.errors.ReauthRequired` with a ``challenge``
    attribute (the server's ``WWW-Authenticate``)."""

    async def list_tools(self, token: str | None, *, headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]: ...

    async def call_tool(
        self, token: str | None, name: str, arguments: Mapping[str, Any] | None, *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]: ...


@dataclass
class _Held:
    token: str = field(default="", repr=False)
    expires_at: float = 0.0
    scopes: tuple[str, ...] = ()


class McpBridge:
    def __init__(
        self, conn: RoomConnection, upstream: Upstream, *, url: str, name: str, for_identity: str | None = None,
        headers: Mapping[str, str] | None = None, consent_timeout: float = 300.0, expiry_margin: float = EXPIRY_MARGIN,
    ) -> None:
        self._margin = expiry_margin
        self._conn = conn
        self._upstream = upstream
        self.url = url
        self.name = name
        self._for = for_identity
        self._headers = dict(headers or {})
        self._consent_timeout = consent_timeout
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: token fetches from roomsvc (offline or consent), for tests and logs
        self.fetches = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Announce the toolkit, then answer calls until the connection closes or ``stop``."""
        await self._conn.request("participant.set_attributes", {"attributes": {
            "toolkit": self.name, "mcp_url": shown_url(self.url), "methods": ["tools.list", "tools.call"],
        }})
        stopper = asyncio.get_running_loop().create_task((stop or asyncio.Event()).wait())
        try:
            while True:
                getter = asyncio.get_running_loop().create_task(self._conn.next_push())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    getter.cancel()
                    return
                push = getter.result()
                if push is None:
                    return
                if push.get("type") == "call":
                    task = asyncio.get_running_loop().create_task(self._answer(push.get("data") or {}))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            stopper.cancel()
            for task in list(self._tasks):
                task.cancel()

    async def _answer(self, call: Mapping[str, Any]) -> None:
        call_id = call.get("call_id")
        try:
            body = await self.handle(call)
            reply: dict[str, Any] = {"call_id": call_id, "body": body}
        except RoomsvcError as exc:
            reply = {"call_id": call_id, "error": f"{exc.name}: {exc.message}"}
        except Exception as exc:  # a bug must still answer the caller, never leave it waiting
            log.exception("MCP bridge call failed unexpectedly (%s)", type(exc).__name__)
            reply = {"call_id": call_id, "error": "internal_error: the MCP bridge failed; see its log"}
        try:
            await self._conn.request("call.reply", reply)
        except RoomsvcError as exc:
            log.warning("could not answer a call: %s", exc.message)

    async def handle(self, call: Mapping[str, Any]) -> dict[str, Any]:
        method, body, caller = call.get("method"), call.get("body"), call.get("from") or {}
        if method == "tools.list":
            tools = await self._authorized(caller, lambda token: self._upstream.list_tools(token, headers=self._headers))
            return {"tools": tools}
        if method == "tools.call":
            if not isinstance(body, Mapping) or not isinstance(body.get("name"), str) or not body["name"]:
                raise InvalidRequest("tools.call takes {\"name\": tool name, \"arguments\": {...}}")
            arguments = body.get("arguments") or {}
            if not isinstance(arguments, Mapping):
                raise InvalidRequest("'arguments' must be an object")
            name = str(body["name"])
            return await self._authorized(
                caller, lambda token: self._upstream.call_tool(token, name, arguments, headers=self._headers)
            )
        raise InvalidRequest(f"the MCP bridge answers tools.list and tools.call, not {str(method)[:40]!r}")

    # -- tokens ---------------------------------------------------------------------------------

    def _person(self, caller: Mapping[str, Any]) -> str:
        if self._for:
            return self._for
        if caller.get("role") == "user" and isinstance(caller.get("identity"), str):
            return str(caller["identity"])
        raise PermissionDenied(
            "this MCP bridge acts for the calling person only; an agent's calls need a bridge started with --for-identity"
        )

    async def _authorized(self, caller: Mapping[str, Any], op: Callable[[str | None], Awaitable[Any]]) -> Any:
        person = self._person(caller)
        token = await self._token(person, stored_only=True)
        try:
            return await op(token)
        except ReauthRequired as exc:
            challenge = str(getattr(exc, "challenge", "") or "")
        # the server wants (another) token: a fresh one if ours was refused, else a consent
        step_up = 'insufficient_scope' in challenge
        token = await self._token(person, stored_only=False, challenge=challenge if step_up else "", refused=token)
        return await op(token)

    async def _token(self, person: str, *, stored_only: bool, challenge: str = "", refused: str | None = None) -> str | None:
        lock = self._locks.setdefault(person, asyncio.Lock())
        async with lock:
            held = self._held.get(person)
            if held is not None and held.token != refused and held.expires_at - time.time() > self._margin:
                return held.token
            if not challenge:
                grant = await self._offline(person)
                if grant is not None and grant.get("access_token") != refused:
                    return self._keep(person, grant)
            if stored_only:
                return None
            return self._keep(person, await self._consent(person, challenge))

    async def _offline(self, person: str) -> dict[str, Any] | None:
        self.fetches += 1
        try:
            grant = await self._conn.request("secrets.get_offline_oauth_token", {"mcp": {"url": self.url}, "delegated_by": person})
        except (ReauthRequired, NotFound):
            return None
        return grant if grant.get("access_token") else None

    async def _consent(self, person: str, challenge: str) -> dict[str, Any]:
        participants = (await self._conn.request("participants.list"))["participants"]
        target = next((p for p in participants if p.get("identity") == person and p.get("role") != "agent"), None)
        if target is None:
            raise NotFound(f"{person!r} must be in the room to consent to the MCP server's authorization")
        mcp: dict[str, Any] = {"url": self.url}
        if challenge:  # a step-up: roomsvc asks for the scopes held plus the challenge's
            mcp["www_authenticate"] = challenge
            held = self._held.get(person)
            if held is not None and held.scopes:
                mcp["scopes"] = list(held.scopes)
        self.fetches += 1
        log.info("asking %s to consent for MCP server %s", person, shown_url(self.url))
        return await self._conn.request(
            "secrets.request_oauth_token",
            {"from_participant_id": target["id"], "mcp": mcp, "timeout": self._consent_timeout},
            timeout=self._consent_timeout + 15,
        )

    def _keep(self, person: str, grant: Mapping[str, Any]) -> str:
        token = grant.get("access_token")
        if not isinstance(token, str) or not token:
            raise ReauthRequired("roomsvc returned no token for the MCP server")
        expires = grant.get("expires_at")
        credential = grant.get("credential")
        listed = credential.get("scopes") if isinstance(credential, Mapping) else None
        scopes = tuple(s for s in listed or () if isinstance(s, str))
        self._held[person] = _Held(token, float(expires) if isinstance(expires, (int, float)) else time.time() + 60, scopes)
        return token
