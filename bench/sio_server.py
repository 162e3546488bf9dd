"""python-socketio on aiohttp: what a Python developer picks for rooms.

A client joins the room named by its ``room`` query parameter on connect; the room hears
``participant.joined`` / ``participant.left``; a ``broadcast`` event is emitted as
``message`` to everyone else in the room (python-socketio's own fan-out).

    python bench/sio_server.py        # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import socket
from urllib.parse import parse_qs

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=20, ping_timeout=20, max_http_buffer_size=131072)
room_of: dict[str, str] = {}


@sio.event
async def connect(sid: str, environ: dict, auth: object = None) -> None:
    room = parse_qs(environ.get("QUERY_STRING", "")).get("room", ["bench"])[0]
    room_of[sid] = room
    await sio.enter_room(sid, room)
    await sio.emit("welcome", {"participant": {"id": sid}, "participants": [
        {"id": p} for p, _ in sio.manager.get_participants("/", room) if p != sid
    ]}, to=sid)
    await sio.emit("participant.joined", {"id": sid}, room=room, skip_sid=sid)


@sio.event
async def disconnect(sid: str, reason: object = None) -> None:
    room = room_of.pop(sid, None)
    if room is not None:
        await sio.emit("participant.left", {"id": sid}, room=room, skip_sid=sid)


@sio.on("broadcast")
async def broadcast(sid: str, data: dict) -> None:
    await sio.emit("message", {"from": {"id": sid}, "message_type": data["message_type"], "body": data["body"],
                               "broadcast": True}, room=room_of[sid], skip_sid=sid)


def main() -> None:
    app = web.Application()
    sio.attach(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
