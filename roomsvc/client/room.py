"""A client of the native websocket protocol, for the CLI (``roomsvc room listen`` etc.).

Connects with the Bearer token, keeps the welcome, matches responses to requests by id
and queues pushes. Errors from the server come back as the roomsvc error of that name.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp

from roomsvc.client.http import _BY_NAME
from roomsvc.errors import (
    DependencyMissing,
    NotFound,
    Overloaded,
    PermissionDenied,
    RoomsvcError,
    TooManyConnections,
    Unauthenticated,
)

_REFUSALS: dict[int, type[RoomsvcError]] = {
    401: Unauthenticated, 403: PermissionDenied, 404: NotFound, 429: TooManyConnections, 503: Overloaded,
}

_EXTRA = {cls.name: cls for cls in RoomsvcError.__subclasses__()}


def ws_url(base_url: str, room: str) -> str:
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return f"{base}/v1/rooms/{room}/ws"


def error_from(body: dict[str, Any]) -> RoomsvcError:
    name = str(body.get("name", ""))
    cls = _BY_NAME.get(name) or _EXTRA.get(name) or _find(name) or RoomsvcError
    return cls(str(body.get("message") or name))


def _find(name: str) -> type[RoomsvcError] | None:
    todo = list(RoomsvcError.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.name == name:
            return cls
        todo.extend(cls.__subclasses__())
    return None


class RoomConnection:
    """One participant connection. Use ``async with RoomConnection.open(...) as conn``."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, welcome: dict[str, Any]) -> None:
        self._session = session
        self._ws = ws
        self.welcome = welcome
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.pushes: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, base_url: str, room: str, token: str) -> "RoomConnection":
        """Raises: Unauthenticated, DependencyMissing (server unreachable), RoomsvcError."""
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(ws_url(base_url, room), headers={"Authorization": f"Bearer {token}"}, heartbeat=20)
        except aiohttp.WSServerHandshakeError as exc:
            await session.close()
            # the refusal's class follows its status, as the HTTP API's errors do
            error = _REFUSALS.get(exc.status, Unauthenticated)
            raise error(f"the server refused the connection (HTTP {exc.status}); check --token and --room") from None
        except aiohttp.ClientError as exc:
            await session.close()
            raise DependencyMissing(f"cannot reach roomsvc at {base_url} ({type(exc).__name__})") from None
        first = await ws.receive(timeout=15)
        if first.type != aiohttp.WSMsgType.TEXT:
            reason = ws.close_code
            await session.close()
            raise Unauthenticated(f"the server closed the connection ({reason}); check --token and --room")
        frame = json.loads(first.data)
        return cls(session, ws, frame.get("data", {}))

    async def __aenter__(self) -> "RoomConnection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def participant_id(self) -> str:
        return str(self.welcome["participant"]["id"])

    async def request(self, kind: str, data: dict[str, Any] | None = None, *, timeout: float = 30) -> dict[str, Any]:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._ws.send_str(json.dumps({"type": kind, "id": request_id, "data": data or {}}))
        try:
            frame = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
        if not frame.get("ok"):
            raise error_from(frame.get("error") or {})
        return dict(frame.get("data") or {})

    async def next_push(self) -> dict[str, Any] | None:
        """The next push, or None once the connection is closed."""
        return await self.pushes.get()

    async def close(self) -> None:
        await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._session.close()

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                future = self._pending.get(frame.get("id")) if frame.get("type") == "response" else None
                if future is not None:
                    if not future.done():
                        future.set_result(frame)
                elif frame.get("type") == "participants.changed":
                    # coalesced presence (docs/protocol.md): the single announcements, in order
                    data = frame.get("data") or {}
                    for kind in ("joined", "updated", "left"):
                        for participant in data.get(kind) or []:
                            self.pushes.put_nowait({"type": f"participant.{kind}", "data": participant})
                else:
                    self.pushes.put_nowait(frame)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(DependencyMissing("the connection to roomsvc closed"))
            self.pushes.put_nowait(None)
