"""How many tokens a call used, read from the provider's own answer as it streams past.

The proxy never buffers an answer to account for it: it feeds each chunk to a scanner
and asks for the :class:`Usage` at the end. Shapes read:

* OpenAI chat completions and completions: ``usage.prompt_tokens`` / ``completion_tokens``;
  streamed, the last chunk carries ``usage`` (the proxy turns on
  ``stream_options.include_usage``, the one change it makes to a body);
* OpenAI responses: ``usage.input_tokens`` / ``output_tokens``; streamed, the
  ``response.completed`` event's ``response.usage``;
* embeddings: ``usage.prompt_tokens``;
* Anthropic messages: ``usage.input_tokens`` (+ cache creation and cache read input
  tokens) / ``output_tokens``; streamed, ``message_start``'s ``message.usage`` then the
  cumulative ``usage`` of ``message_delta``.

Each report found replaces the fields it carries (Anthropic's deltas are cumulative).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    #: whether the answer carried a usage report at all
    reported: bool = False

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


NONE = Usage()


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def usage_report(obj: object) -> dict[str, Any] | None:
    """The usage object of one answer or stream event, wherever that shape puts it."""
    if not isinstance(obj, dict):
        return None
    for holder in (obj, obj.get("response"), obj.get("message")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            return holder["usage"]
    return None


def merge(current: Usage, report: dict[str, Any]) -> Usage:
    """``current`` with the fields ``report`` carries replaced."""
    inputs = [_count(report.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    input_tokens = _count(report.get("prompt_tokens"))
    if input_tokens is None and inputs[0] is not None:
        input_tokens = sum(i or 0 for i in inputs)
    output_tokens = _count(report.get("completion_tokens"))
    if output_tokens is None:
        output_tokens = _count(report.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        total = _count(report.get("total_tokens"))
        if total is None:
            return current
        return Usage(total, 0, True)
    return Usage(
        current.input_tokens if input_tokens is None else input_tokens,
        current.output_tokens if output_tokens is None else output_tokens,
        True,
    )


class BodyScanner:
    """A JSON answer: kept up to ``limit`` bytes, read once at the end."""

    def __init__(self, limit: int) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        if self.truncated:
            return
        self._size += len(chunk)
        if self._size > self._limit:
            self.truncated = True
            self._parts.clear()
            return
        self._parts.append(chunk)

    def usage(self) -> Usage:
        if self.truncated or not self._parts:
            return NONE
        try:
            report = usage_report(json.loads(b"".join(self._parts)))
        except ValueError:
            return NONE
        return merge(NONE, report) if report is not None else NONE


class SseScanner:
    """Server-sent events: each ``data:`` line is parsed as it completes; a line longer
    than ``max_line`` is skipped (usage reports are small), so memory stays bounded."""

    def __init__(self, max_line: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._skipping = False
        self._max = max_line
        self._usage = NONE

    def feed(self, chunk: bytes) -> None:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if not self._skipping:
                self._buffer += chunk[start:end]
                self._line(bytes(self._buffer))
            self._buffer.clear()
            self._skipping = False
            start = end + 1
        if not self._skipping:
            self._buffer += chunk[start:]
            if len(self._buffer) > self._max:
                self._buffer.clear()
                self._skipping = True

    def _line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if not data.startswith(b"{"):
            return  # [DONE] and keep-alives
        try:
            report = usage_report(json.loads(data))
        except ValueError:
            return
        if report is not None:
            self._usage = merge(self._usage, report)

    def usage(self) -> Usage:
        if self._buffer and not self._skipping:
            self._line(bytes(self._buffer))
            self._buffer.clear()
        return self._usage
