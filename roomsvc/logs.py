"""Logging set-up: plain text or JSON lines, one line per record.

Secrets never reach a log line by construction (values are SecretBytes/SecretStr with
masked reprs, tokens are never formatted); as a last guard, control characters in
messages are escaped so an identity cannot forge extra lines.
"""

from __future__ import annotations

import json
import logging
import sys
import time


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
            "message": record.getMessage(),
        }
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
