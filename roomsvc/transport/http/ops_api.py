"""Health, readiness, metrics and the OpenAPI description."""

from __future__ import annotations

from aiohttp import web

from roomsvc import __version__
from roomsvc.transport.http.keys import METRICS, READY, SERVICES
from roomsvc.transport.http.openapi import openapi_document


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[READY]
    if not state.get("ready"):
        return web.json_response({"status": "starting"}, status=503)
    try:
        await request.app[SERVICES].rooms.list_rooms()
    except Exception:
        return web.json_response({"status": "storage unavailable"}, status=503)
    # issue 15: a node cut off from the other nodes admits nobody (it would split the room)
    cut_off = request.app[SERVICES].rooms.unavailable()
    if cut_off is not None:
        return web.json_response({"status": cut_off}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": request.app[METRICS].content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[SERVICES].public_url()))
