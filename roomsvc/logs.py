"""Logging set-up: plain text or JSON lines, one line per record.

Secrets never reach a log line by construction (values are SecretBytes/SecretStr with
masked reprs, tokens are never formatted); as a last guard, control characters in
messages are escaped so an identity cannot forge extra lines.

A JSON line carries one ``event`` name (``extra={"event": "ws.request_failed"}``; the
logger's name otherwise), the ``incident`` id a client was told, if any, and, while
tracing is on, the ``trace_id`` and ``span_id`` of the span it was logged in, so a line
leads to its trace and a trace to its lines (docs/operations.md).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Callable

#: the current (trace id, span id), or None outside a span; set by the composition root
#: when tracing is on (the tracer lives in roomsvc.transport.tracing)
_trace_ids: Callable[[], tuple[str, str] | None] | None = None


def use_trace_ids(source: Callable[[], tuple[str, str] | None] | None) -> None:
    global _trace_ids
    _trace_ids = source


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\r", "\\r").replace("\n", "\\n") if record.exc_info is None else text


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": str(getattr(record, "event", record.name)),
            "message": record.getMessage(),
        }
        incident = getattr(record, "incident", None)
        if incident is not None:
            out["incident"] = str(incident)
        ids = _trace_ids() if _trace_ids is not None else None
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(*, level: str = "info", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json() if json_lines else _OneLine("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would print query strings; roomsvc installs its own
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
