"""The practical limit: a bare aiohttp server doing the benchmark's work with no auth
checks beyond comparing a bearer string, no storage (except the raw aiosqlite routes of
the secret set/get scenario) and no encryption.

It speaks just enough of the native protocol for the load generator (bench/wsload.py):
``welcome``, ``participant.joined``/``left`` (one frame per join per member, encoded
once), ``message.broadcast`` (the frame encoded once, the same string sent to every
receiver), ``ping`` and ``headers.resolve`` (a dict lookup). Over HTTP:
``POST /v1/rooms/{room}/headers`` (bearer check + dict lookup) and
``PUT``/``GET /raw/secrets/{id}`` (raw aiosqlite, WAL, synchronous=FULL: what roomsvc's
SQLite store sets).

    python bench/bare_server.py DATA_DIR TOKEN     # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
from collections import defaultdict
from pathlib import Path

import aiosqlite
from aiohttp import WSMsgType, web

TOKEN = sys.argv[2] if len(sys.argv) > 2 else "bench"
VALUES = {"github": "gho_" + "x" * 36}
rooms: dict[str, dict[str, web.WebSocketResponse]] = defaultdict(dict)


async def _send(ws: web.WebSocketResponse, text: str) -> None:
    """Send, ignoring a peer that is going away (its own handler cleans up)."""
    try:
        await ws.send_str(text)
    except (ConnectionError, RuntimeError):
        pass


def _encode(frame: dict) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _resolve(specs: list[str]) -> dict[str, str]:
    headers = {}
    for spec in specs:
        name, template = spec.split(":", 1)
        key = template[template.index("{") + 1:template.index("}")]
        headers[name] = template.replace("{" + key + "}", VALUES[key])
    return headers


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    room = request.query.get("room", "bench")
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=131072)
    await ws.prepare(request)
    me = secrets.token_hex(12)
    present = rooms[room]
    await ws.send_str(_encode({"type": "welcome", "data": {
        "room": room, "participant": {"id": me}, "participants": [{"id": p} for p in present],
    }}))
    joined = _encode({"type": "participant.joined", "data": {"id": me}})
    for other in list(present.values()):
        await _send(other, joined)
    present[me] = ws
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            kind, data, rid = frame["type"], frame.get("data", {}), frame.get("id")
            if kind == "message.broadcast":
                out = _encode({"type": "message", "data": {
                    "from": {"id": me}, "message_type": data["message_type"], "body": data["body"], "broadcast": True,
                }})
                n = 0
                for pid, other in list(present.items()):
                    if pid != me:
                        await _send(other, out)
                        n += 1
                result: dict = {"delivered": n}
            elif kind == "headers.resolve":
                result = {"headers": _resolve(data["header_secrets"])}
            elif kind == "ping":
                result = {"pong": True}
            else:
                result = {}
            if rid is not None:
                await _send(ws, _encode({"type": "response", "id": rid, "ok": True, "data": result}))
    finally:
        present.pop(me, None)
        left = _encode({"type": "participant.left", "data": {"id": me}})
        for other in list(present.values()):
            await _send(other, left)
    return ws


async def headers_handler(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return web.json_response({"error": "unauthenticated"}, status=401)
    body = await request.json()
    return web.json_response({"headers": _resolve(body["header_secrets"])})


async def put_raw(request: web.Request) -> web.Response:
    body = await request.json()
    value = body["text"].encode()
    db: aiosqlite.Connection = request.app["db"]
    await db.execute("INSERT INTO secrets (id, value) VALUES (?, ?)", (request.match_info["id"], value))
    await db.commit()
    return web.json_response({"id": request.match_info["id"]})


async def get_raw(request: web.Request) -> web.Response:
    db: aiosqlite.Connection = request.app["db"]
    async with db.execute("SELECT value FROM secrets WHERE id = ? ORDER BY rowid DESC LIMIT 1",
                          (request.match_info["id"],)) as cur:
        row = await cur.fetchone()
    if row is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response({"value": row[0].decode()})


async def open_db(app: web.Application):
    db = await aiosqlite.connect(Path(sys.argv[1]) / "raw.db")
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("CREATE TABLE IF NOT EXISTS secrets (id TEXT NOT NULL, value BLOB NOT NULL)")
    await db.execute("CREATE INDEX IF NOT EXISTS secrets_id ON secrets (id)")
    await db.commit()
    app["db"] = db
    yield
    await db.close()


def main() -> None:
    Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/v1/rooms/{room}/headers", headers_handler)
    app.router.add_put("/raw/secrets/{id}", put_raw)
    app.router.add_get("/raw/secrets/{id}", get_raw)
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
    app.cleanup_ctx.append(open_db)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
