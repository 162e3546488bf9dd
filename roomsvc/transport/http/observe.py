"""The HTTP side of telemetry: one span and one latency observation per request.

Labelled by the route *template* (``/v1/rooms/{room}/secrets/{secret_id}``), never the
path or its query: paths name rooms and secrets, queries carry codes and state. A
websocket upgrade is a connection, not a request: its operations are measured one by one
(:mod:`roomsvc.transport.ws.endpoint`).
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from aiohttp import web

from roomsvc.transport.http.keys import TELEMETRY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await handler(request)
    telemetry = request.app[TELEMETRY]
    route = route_template(request)
    began = time.perf_counter()
    status = 500
    room = request.match_info.get("room")
    attributes = {"http.request.method": request.method, "http.route": route}
    with telemetry.server_span(f"{request.method} {route}", request.headers, **attributes) as span:
        if room is not None:
            span.set("room", room)
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            span.set("http.response.status_code", status)
            if status >= 500:
                span.fail(str(status))
            if telemetry.ops is not None:
                telemetry.ops.http_request(route, request.method, status, time.perf_counter() - began)
