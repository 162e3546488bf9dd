"""``/v1/rooms/{room}/secrets``: room secrets over HTTP (the CLI uses these)."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from roomsvc.transport.fields import opt_str, opt_version, value_or_text
from roomsvc.transport.http.auth import caller, json_body
from roomsvc.transport.http.keys import SERVICES

CHANNEL = "http"


def _addressing(request: web.Request, source: Any | None = None) -> dict[str, Any]:
    q = source if source is not None else request.query
    return {
        "secret_id": request.match_info["secret_id"],
        "delegated_to": opt_str(q, "delegated_to"),
        "for_identity": opt_str(q, "for_identity"),
    }


async def list_secrets(request: web.Request) -> web.Response:
    records = await request.app[SERVICES].secrets.list(
        caller(request), request.match_info["room"], for_identity=opt_str(request.query, "for_identity"), channel=CHANNEL
    )
    return web.json_response({"secrets": [r.as_dict() for r in records]})


async def put_secret(request: web.Request) -> web.Response:
    principal = caller(request)  # before the body: an unauthenticated client's body is never read
    body = await json_body(request, principal)
    record = await request.app[SERVICES].secrets.set(
        principal, request.match_info["room"], value=value_or_text(body, binary=("value_base64", "data_base64"), hint="give the value as exactly one of 'value_base64' or 'text'"), type=opt_str(body, "type"),
        name=opt_str(body, "name"), expected_version=opt_version(body), channel=CHANNEL, **_addressing(request, body),
    )
    return web.json_response({"secret": record.as_dict()})


async def get_secret(request: web.Request) -> web.Response:
    record, value = await request.app[SERVICES].secrets.get(
        caller(request), request.match_info["room"], channel=CHANNEL, **_addressing(request)
    )
    return web.json_response({"secret": record.as_dict(), "value_base64": base64.b64encode(value.reveal()).decode()})


async def secret_exists(request: web.Request) -> web.Response:
    found = await request.app[SERVICES].secrets.exists(
        caller(request), request.match_info["room"], channel=CHANNEL, **_addressing(request)
    )
    return web.json_response({"exists": found})


async def delete_secret(request: web.Request) -> web.Response:
    record = await request.app[SERVICES].secrets.delete(
        caller(request), request.match_info["room"], channel=CHANNEL, **_addressing(request)
    )
    return web.json_response({"deleted": record.id})


async def secret_versions(request: web.Request) -> web.Response:
    found = await request.app[SERVICES].secrets.versions(
        caller(request), request.match_info["room"], channel=CHANNEL, **_addressing(request)
    )
    return web.json_response({"versions": [{"version": v, "created_at": t} for v, t in found]})
