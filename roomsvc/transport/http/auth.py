"""Who is calling an HTTP endpoint: the Bearer participant token."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from roomsvc import strict_json
from roomsvc.domain.principal import Principal
from roomsvc.errors import InvalidRequest, PermissionDenied, Unauthenticated
from roomsvc.transport.fields import bearer
from roomsvc.transport.http.keys import SERVICES


def caller(request: web.Request) -> Principal:
    token = bearer(request.headers.get("Authorization", ""))
    if token is None:
        raise Unauthenticated("send a participant token as 'Authorization: Bearer <token>'")
    return request.app[SERVICES].authenticate(token)


def operator(request: web.Request) -> Principal:
    principal = caller(request)
    if not principal.is_operator:
        raise PermissionDenied("this endpoint needs an operator token (roomsvc token --operator)")
    return principal


async def json_body(request: web.Request, authenticated: Principal) -> dict[str, Any]:
    """The request's JSON object, parsed strictly like every websocket frame.

    ``authenticated`` is the caller already checked: taking it makes every handler check
    the token first, so an unauthenticated client never gets its body read or parsed.
    The size is bounded by ``server.max_body_size`` (aiohttp answers 413 above it).

    Raises:
        InvalidRequest: not JSON, not strict JSON (duplicate keys, NaN, too deep) or
            not an object.
    """
    del authenticated  # the proof that the caller was checked; nothing more to do with it
    if request.content_type != "application/json":
        raise InvalidRequest("send a JSON body with Content-Type: application/json")
    body = strict_json.loads(await request.read(), what="body")
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body
