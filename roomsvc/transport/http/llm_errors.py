"""Refusals of the LLM proxy in each provider's own error shape, so the official clients
raise their usual exception with roomsvc's message (an ``AuthenticationError`` for a bad
token, a ``RateLimitError`` over a limit or a budget, ...). Statuses come from the one
table (:mod:`roomsvc.transport.errors`); only the body's shape is the provider's.

* OpenAI: ``{"error": {"message", "type", "param", "code"}}``
* Anthropic: ``{"type": "error", "error": {"type", "message"}}``
"""

from __future__ import annotations

from aiohttp import web

from roomsvc import errors as e
from roomsvc.domain.llm.grant import OPENAI
from roomsvc.transport.errors import retry_after_header, wire_error

#: roomsvc error -> (OpenAI type, OpenAI code, Anthropic type); looked up along the MRO
_SHAPES: dict[type[e.RoomsvcError], tuple[str, str | None, str]] = {
    e.Unauthenticated: ("invalid_request_error", "invalid_api_key", "authentication_error"),
    e.PermissionDenied: ("invalid_request_error", "permission_denied", "permission_error"),
    e.NotFound: ("invalid_request_error", "not_found", "not_found_error"),
    e.InvalidRequest: ("invalid_request_error", None, "invalid_request_error"),
    e.TooLarge: ("invalid_request_error", "request_too_large", "request_too_large"),
    e.RateLimited: ("requests", "rate_limit_exceeded", "rate_limit_error"),
    e.BudgetExceeded: ("insufficient_quota", "insufficient_quota", "rate_limit_error"),
    e.Overloaded: ("server_error", "overloaded", "overloaded_error"),
    e.Timeout: ("server_error", "timeout", "api_error"),
    e.RoomsvcError: ("server_error", None, "api_error"),
}


def shape(exc: e.RoomsvcError) -> tuple[str, str | None, str]:
    for cls in type(exc).__mro__:
        if cls in _SHAPES:
            return _SHAPES[cls]
    return _SHAPES[e.RoomsvcError]


def refusal(provider: str, exc: e.RoomsvcError) -> web.Response:
    openai_type, code, anthropic_type = shape(exc)
    if provider == OPENAI:
        body: dict[str, object] = {"error": {"message": exc.message, "type": openai_type, "param": None, "code": code}}
    else:
        body = {"type": "error", "error": {"type": anthropic_type, "message": exc.message}}
    headers = {"Cache-Control": "no-store", **retry_after_header(exc)}
    return web.json_response(body, status=wire_error(exc).status, headers=headers)
