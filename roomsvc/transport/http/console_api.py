"""What the room console (``/ui/rooms/{room}``) reads over HTTP beyond the secrets list:
the caller's OAuth credentials with their status, and the caller's own audit lines.

Both answer only about the caller's identity in the caller's room (see
:meth:`~roomsvc.domain.audit.Auditor.own_lines` and
:meth:`~roomsvc.domain.oauth.service.OAuthService.describe_credentials`); neither ever
holds a value or a token.
"""

from __future__ import annotations

from aiohttp import web

from roomsvc.domain.audit import MAX_OWN_LINES
from roomsvc.errors import InvalidRequest
from roomsvc.transport.http.auth import caller
from roomsvc.transport.http.keys import SERVICES

CHANNEL = "http"


async def list_credentials(request: web.Request) -> web.Response:
    """``GET /v1/rooms/{room}/oauth/credentials``: the caller's own OAuth credentials."""
    services = request.app[SERVICES]
    # the secrets list decides who may see what (and audits and rate-limits it)
    records = await services.secrets.list(caller(request), request.match_info["room"], channel=CHANNEL)
    return web.json_response({"credentials": await services.oauth.describe_credentials(records)})


async def own_audit(request: web.Request) -> web.Response:
    """``GET /v1/rooms/{room}/audit?limit=N``: the caller's recent audit lines."""
    principal = caller(request)
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_OWN_LINES:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_OWN_LINES}")
    lines = await request.app[SERVICES].auditor.own_lines(principal, request.match_info["room"], limit=int(raw))
    return web.json_response({"audit": [r.__dict__ for r in lines]})
