"""Errors to JSON through the one table, no-store on API answers, a query-free access log."""

from __future__ import annotations

import logging
import secrets
from typing import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from roomsvc.errors import InternalError, RoomsvcError
from roomsvc.transport.errors import error_body, retry_after_header, wire_error
from roomsvc.transport.http.keys import METRICS

log = logging.getLogger("roomsvc.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except RoomsvcError as exc:
        request.app[METRICS].errors.labels(str(wire_error(exc).code)).inc()
        response = web.json_response({"error": error_body(exc)}, status=wire_error(exc).status, headers=retry_after_header(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = web.json_response(
            {"error": {"code": 1002 if exc.status < 500 else 1008, "name": "http_error", "message": exc.reason}},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except Exception:
        incident = secrets.token_hex(4)
        log.exception(
            "%s %s failed (incident %s)", request.method, request.path, incident,
            extra={"event": "http.request_failed", "incident": incident},
        )
        failure = InternalError(f"internal error (incident {incident})")
        response = web.json_response({"error": error_body(failure)}, status=wire_error(failure).status)
    if request.path.startswith("/v1/") and not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path without its query (tokens, codes and state
    can travel in query strings), status, size and time."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %.1fms",
            request.remote,
            request.method,
            request.rel_url.path,
            response.status,
            time * 1000,
            extra={"event": "http.access"},
        )
