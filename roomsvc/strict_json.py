"""Strict JSON for every document roomsvc did not write itself: HTTP bodies, both websocket
protocols, participant tokens and OAuth providers' answers parse with this.

Duplicate keys, NaN/Infinity and nesting deeper than :data:`MAX_DEPTH` are refused, so two
parsers can never read one message differently and a deep document cannot exhaust the
stack.
"""

from __future__ import annotations

import json
from typing import Any

from roomsvc.errors import InvalidRequest

MAX_DEPTH = 32


def loads(text: str | bytes, *, what: str = "message") -> Any:
    """Parse ``text``; ``what`` names the thing in error messages.

    Raises:
        InvalidRequest: not UTF-8, not JSON, a duplicate key, a constant or too deep.
    """
    try:
        value = json.loads(
            text.decode("utf-8") if isinstance(text, bytes) else text,
            object_pairs_hook=lambda pairs: _no_duplicates(pairs, what),
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError:
        raise InvalidRequest(f"the {what} is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"invalid JSON in the {what} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidRequest(f"the {what} nests deeper than {MAX_DEPTH} levels") from None
    _check_depth(value, 0, what)
    return value


def _no_duplicates(pairs: list[tuple[str, Any]], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidRequest(f"duplicate key {key[:40]!r} in the {what}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise InvalidRequest(f"{name} is not valid JSON")


def _check_depth(value: Any, level: int, what: str) -> None:
    if level > MAX_DEPTH:
        raise InvalidRequest(f"the {what} nests deeper than {MAX_DEPTH} levels")
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        _check_depth(child, level + 1, what)
