"""Helpers shared by the SDK driver scripts (run by .venv313's Python 3.13, not by pytest)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from meshagent.api import RoomClient, WebSocketClientProtocol
from meshagent.api.urls import websocket_room_url


def read_config() -> dict[str, Any]:
    """The scenario's settings, as one JSON object on stdin."""
    return json.loads(sys.stdin.read())


def emit(**fields: Any) -> None:
    """One JSON line on stdout: a step the pytest side waits for, or the result."""
    print(json.dumps(fields), flush=True)


def room_client(base_url: str, room: str, token: str | None, *, token_in_query: bool = False, **options: Any) -> RoomClient:
    """A RoomClient that fails at once instead of retrying (reconnect_timeout=0).

    ``token_in_query`` connects the way SDKs up to 0.40 did: ``?token=`` and no header.
    ``options`` go to RoomClient (e.g. ``oauth_token_request_handler``).
    """
    url = websocket_room_url(room_name=room, base_url=base_url.replace("http://", "ws://"))
    if token_in_query:
        url, token = f"{url}?token={token}", None
    factory = WebSocketClientProtocol(url=url, token=token).create_factory()
    return RoomClient(protocol_factory=factory, reconnect_timeout=0, **options)


async def outcome(coro: Any) -> dict[str, Any]:
    """``{"ok": True, "value": ...}`` or the error, so one failed call does not end a scenario."""
    try:
        value = await coro
    except Exception as exc:  # noqa: BLE001 - the report is the point
        return {"ok": False, **error_of(exc)}
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return {"ok": True, "value": value}


async def refused(base_url: str, room: str, token: str) -> dict[str, Any]:
    """Try to connect with a token that must be refused; report how it failed and how fast."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with room_client(base_url, room, token):
            return {"connected": True}
    except Exception as exc:  # noqa: BLE001 - the report is the point
        return {"connected": False, "error": type(exc).__name__, "text": str(exc)[:200],
                "seconds": round(loop.time() - started, 2)}


def error_of(exc: BaseException) -> dict[str, Any]:
    return {"error": type(exc).__name__, "code": getattr(exc, "code", None), "text": str(exc)[:200]}
