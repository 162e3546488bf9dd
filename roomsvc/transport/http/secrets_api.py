"""``/v1/rooms/{room}/secrets``: room secrets over HTTP (the CLI uses these)."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from roomsvc.errors import InvalidRequest
from roomsvc.transport.http.auth import caller, decode_b64, json_body, opt_str
from roomsvc.transport.http.keys import SERVICES

CHANNEL = "http"


def _addressing(request: web.Request, source: Any | None = None) -> dict[str, Any]:
    q = source if source is not None else request.query
    return {
        "secret_id": request.match_info["secret_id"],
        "delegated_to": opt_str(q, "delegated_to"),
        "for_identity": opt_str(q, "for_identity"),
    }


def _value(body: dict[str, Any]) -> bytes:
    sources = [k for k in ("value_base64", "data_base64", "text") if body.get(k) is not None]
    if len(sources) != 1:
        raise InvalidRequest("give the value as exactly one of 'value_base64' or 'text'")
    if sources[0] == "text":
        if not isinstance(body["text"], str):
            raise InvalidRequest("'text' must be a string")
        return body["text"].encode()
    return decode_b64(body[sources[0]], sources[0])


async def list_secrets(request: web.Request) -> web.Response:
    records = await request.app[SERVICES].secrets.list(
        caller(request), request.match_info["room"], for_identity=opt_str(request.query, "for_identity"), channel=CHANNEL
    )
    return web.json_response({"secrets": [r.as_dict() for r in records]})


async def put_secret(request: web.Request) -> web.Response:
    principal = caller(request)  # before the body: an unauthenticated client's body is never read
    body = await json_body(request, principal)
    expected = body.get("expected_version")
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool) or expected < 0):
        raise InvalidRequest("'expected_version' must be a non-negative integer")
    record = await request.app[SERVICES].secrets.set(
        principal, request.match_info["room"], value=_value(body), type=opt_str(body, "type"),
        name=opt_str(body, "name"), expected_version=expected, channel=CHANNEL, **_addressing(request, body),
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
