"""``POST /v1/rooms/{room}/headers``: resolved headers for a toolkit (never cached: no-store)."""

from __future__ import annotations

from aiohttp import web

from roomsvc.errors import InvalidRequest
from roomsvc.ids import parse_name
from roomsvc.transport.fields import opt_str
from roomsvc.transport.http.auth import caller, json_body
from roomsvc.transport.http.keys import SERVICES
from roomsvc.transport.ws.header_ops import resolved_as_dict


async def resolve_headers(request: web.Request) -> web.Response:
    principal = caller(request)
    service = request.app[SERVICES].headers
    body = await json_body(request, principal)
    specs = body.get("header_secrets")
    if not isinstance(specs, list):
        raise InvalidRequest("'header_secrets' must be a list of HEADER:FORMAT strings")
    resolved = await service.resolve(
        principal, request.match_info["room"], specs, for_identity=opt_str(body, "for_identity"),
        toolkit=_toolkit(body) or principal.identity, channel="http.headers",
        destination=opt_str(body, "destination"),
    )
    return web.json_response({"headers": [resolved_as_dict(h) for h in resolved]}, headers={"Cache-Control": "no-store"})


def _toolkit(body: dict[str, object]) -> str | None:
    """The toolkit named in the body, which goes into the audit line's channel: the
    identity character set only, so it cannot forge or garble audit output."""
    name = opt_str(body, "toolkit")
    return None if name is None else parse_name(name, "toolkit name")
