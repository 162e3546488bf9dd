"""The end of an authenticated websocket session, for both protocols.

A session lasts as long as its token counts: it is closed with 4001 when the token
expires (``exp`` plus ``tokens.leeway``, a timer per connection, no polling), at once
when an operator revokes the token (the token service calls :func:`close_revoked`),
and every request re-checks both before it runs (:func:`session_refusal`).
"""

from __future__ import annotations

import asyncio
from typing import Iterable

from roomsvc.domain.principal import Principal
from roomsvc.domain.services import Services
from roomsvc.errors import Unauthenticated
from roomsvc.transport.ws.connection import Connection

CLOSE_UNAUTHENTICATED = 4001
_closing: set[asyncio.Task[None]] = set()


def watch_session(services: Services, conn: Connection, principal: Principal) -> None:
    """Tie the connection to its token: closed at expiry, or now if already refused."""
    conn.principal = principal
    tokens = services.tokens
    if tokens is None:
        return
    refusal = session_refusal(services, principal)
    if refusal is not None:
        conn.close_after(0, CLOSE_UNAUTHENTICATED, refusal.message)
        return
    left = tokens.seconds_left(principal)
    if left is not None:
        conn.close_after(max(left, 0.0), CLOSE_UNAUTHENTICATED, "token expired")


def session_refusal(services: Services, principal: Principal) -> Unauthenticated | None:
    """Why a request on this session may not run now (revoked or expired), or None."""
    if services.tokens is None:
        return None
    try:
        services.tokens.check(principal)
    except Unauthenticated as exc:
        return exc
    return None


def close_revoked(services: Services, connections: Iterable[Connection]) -> None:
    """Close (4001) every open socket whose token is now revoked; never blocks."""
    tokens = services.tokens
    if tokens is None:
        return
    for conn in list(connections):
        if conn.principal is not None and not conn.closing and tokens.is_revoked(conn.principal):
            task = asyncio.get_running_loop().create_task(conn.close(CLOSE_UNAUTHENTICATED, "token revoked"))
            _closing.add(task)
            task.add_done_callback(_closing.discard)
