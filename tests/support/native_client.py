"""A small client of the native websocket protocol, for tests and examples."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp


def expand_presence(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """A coalesced ``participants.changed`` as the single announcements it stands for
    (joined, then updated, then left: docs/protocol.md); any other frame as itself."""
    if frame.get("type") != "participants.changed":
        return [frame]
    data = frame["data"]
    return [{"type": f"participant.{kind}", "data": p} for kind in ("joined", "updated", "left") for p in data[kind]]


class ResponseError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')} {error.get('name')}: {error.get('message')}")
        self.error = error
        self.code = error.get("code")
        self.name = error.get("name")
        self.message = error.get("message")


class NativeClient:
    """Connects, keeps the welcome, matches responses by id and queues pushes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession | None = None) -> None:
        self.ws = ws
        self._session = session
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.welcome: dict[str, Any] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, url: str, token: str | None, *, session: aiohttp.ClientSession | None = None,
                      auth_message: bool = False, **ws_kwargs: Any) -> "NativeClient":
        own = session is None
        session = session or aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {token}"} if token and not auth_message else {}
        ws = await session.ws_connect(url, headers=headers, **ws_kwargs)
        client = cls(ws, session if own else None)
        if auth_message:
            await ws.send_str(json.dumps({"type": "auth", "token": token}))
        first = await ws.receive(timeout=10)
        if first.type != aiohttp.WSMsgType.TEXT:
            await client.close()
            raise ConnectionError(f"no welcome: {first.type} {ws.close_code}")
        frame = json.loads(first.data)
        assert frame["type"] == "welcome", frame
        client.welcome = frame["data"]
        client._reader = asyncio.get_running_loop().create_task(client._read())
        return client

    @property
    def participant_id(self) -> str:
        return self.welcome["participant"]["id"]

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame.get("type") == "response" and frame.get("id") in self._pending:
                    future = self._pending.pop(frame["id"])
                    if not future.done():
                        future.set_result(frame)
                else:
                    for push in expand_presence(frame):
                        await self.events.put(push)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self.closed.set()

    async def request(self, kind: str, data: dict[str, Any] | None = None, *, timeout: float = 10) -> dict[str, Any]:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self.ws.send_str(json.dumps({"type": kind, "id": request_id, "data": data or {}}))
        frame = await asyncio.wait_for(future, timeout)
        if not frame["ok"]:
            raise ResponseError(frame["error"])
        return frame["data"]

    async def next_event(self, kind: str | None = None, *, timeout: float = 5) -> dict[str, Any]:
        """The next push (of that type, skipping others)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            frame = await asyncio.wait_for(self.events.get(), max(remaining, 0.001))
            if kind is None or frame.get("type") == kind:
                return frame

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
