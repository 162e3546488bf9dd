"""``headers.resolve``: render HEADER:FORMAT specs from the caller's room secrets."""

from __future__ import annotations

from typing import Any

from roomsvc.errors import InvalidRequest
from roomsvc.transport.ws.ops import Context, op


def resolved_as_dict(header: Any) -> dict[str, Any]:
    return {
        "name": header.name,
        "value": header.value,
        "expires_at": header.expires_at,
        "allowed_hosts": list(header.allowed_hosts) if header.allowed_hosts is not None else None,
    }


@op("headers.resolve")
async def headers_resolve(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    service = ctx.services.headers
    specs = data.get("header_secrets")
    if not isinstance(specs, list):
        raise InvalidRequest("'header_secrets' must be a list of HEADER:FORMAT strings")
    for_identity = data.get("for_identity")
    if for_identity is not None and not isinstance(for_identity, str):
        raise InvalidRequest("'for_identity' must be a string")
    destination = data.get("destination")
    if destination is not None and not isinstance(destination, str):
        raise InvalidRequest("'destination' must be a URL string")
    resolved = await service.resolve(
        ctx.participant.principal, ctx.room, specs, for_identity=for_identity,
        toolkit=ctx.participant.identity, channel="ws.headers", destination=destination,
    )
    return {"headers": [resolved_as_dict(h) for h in resolved]}
