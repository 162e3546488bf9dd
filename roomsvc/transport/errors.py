"""The one table from domain errors to wire errors.

Every transport looks errors up here: the application error code (MeshAgent's
1001-1009 where they fit, roomsvc's own above 1009), the HTTP status, and the websocket
close code used when the error ends a connection (RFC 6455 codes, and 4000-4999 for
roomsvc's own). ``docs/protocol.md`` publishes the same table; a test keeps them equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roomsvc import errors as e


@dataclass(frozen=True)
class WireError:
    code: int
    status: int
    close: int


#: most specific classes first is not needed: lookup walks the exception's MRO
ERROR_TABLE: dict[type[e.RoomsvcError], WireError] = {
    e.PermissionDenied: WireError(1001, 403, 4003),
    e.Unauthenticated: WireError(1001, 401, 4001),
    e.InvalidRequest: WireError(1002, 400, 1008),
    e.TooLarge: WireError(1002, 413, 1009),
    e.NotFound: WireError(1003, 404, 4004),
    e.AlreadyExists: WireError(1004, 409, 1008),
    e.Conflict: WireError(1005, 409, 1008),
    e.InvalidState: WireError(1006, 409, 1008),
    e.Sealed: WireError(1006, 503, 1013),
    e.DependencyMissing: WireError(1007, 502, 1011),
    e.PullRefused: WireError(1007, 502, 1011),
    e.OperationFailed: WireError(1008, 500, 1011),
    e.InternalError: WireError(1008, 500, 1011),
    e.StorageError: WireError(1008, 503, 1011),
    e.DecryptionFailed: WireError(1008, 500, 1011),
    e.ReauthRequired: WireError(1006, 409, 1008),
    e.OAuthError: WireError(1007, 502, 1011),
    e.ProviderUnavailable: WireError(1007, 503, 1011),
    e.Rejected: WireError(1011, 403, 1008),
    e.Timeout: WireError(1009, 504, 1011),
    e.Overloaded: WireError(1010, 503, 1013),
    e.TooManyConnections: WireError(1010, 429, 4029),
    # 429, not 503: this caller sent too much; the server is fine and serves the others
    e.RateLimited: WireError(1010, 429, 1013),
    e.RoomsvcError: WireError(1008, 500, 1011),
}

#: websocket close codes roomsvc uses, with their meaning (published in docs/protocol.md)
CLOSE_CODES: dict[int, str] = {
    1000: "normal closure (the client or server ended the session)",
    1001: "going away: the server is shutting down",
    1002: "protocol error (malformed websocket frames)",
    1003: "unsupported data: a binary frame on the native protocol (JSON text only), or text on the MeshAgent one",
    1007: "invalid payload data: a text frame that is not valid UTF-8",
    1008: "policy violation: too many invalid messages on one connection",
    1009: "message too big: above websocket.max_message_size",
    1011: "internal error: a failure in the server; only this connection is affected",
    1013: "try again later: the server or room is overloaded, or the vault is sealed",
    4001: "unauthenticated: the token is missing, malformed, badly signed or expired, or it expired or was revoked during the session",
    4003: "permission denied: the token has no grant for this room",
    4004: "room not found (rooms must be created first on this server)",
    4008: "authentication timeout: no auth message within websocket.auth_timeout of the upgrade (pings do not extend it)",
    4029: "too many connections for this identity (websocket.max_connections_per_identity)",
    4030: "slow consumer: the outbound queue overflowed (websocket.outbound_queue)",
}


def wire_error(exc: e.RoomsvcError) -> WireError:
    for cls in type(exc).__mro__:
        if issubclass(cls, e.RoomsvcError) and cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return ERROR_TABLE[e.RoomsvcError]


def error_body(exc: e.RoomsvcError) -> dict[str, object]:
    """The JSON shape of an error, shared by HTTP and the native websocket protocol."""
    body: dict[str, object] = {"code": wire_error(exc).code, "name": exc.name, "message": exc.message}
    if isinstance(exc, e.RateLimited):
        body["retry_after"] = exc.retry_after
    return body


def retry_after_header(exc: e.RoomsvcError) -> dict[str, str]:
    """``Retry-After`` (whole seconds, RFC 9110 10.2.3) for an HTTP answer to a rate-limited call."""
    if isinstance(exc, e.RateLimited):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return {}
