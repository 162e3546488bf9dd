"""MeshAgent packed payloads and the content envelope, free of I/O.

A message payload is ``[u64 big-endian JSON length][JSON header][binary trailer]``.
Senders add ``"__meshagent__": {"v": 1, "otel": {...}}`` (trace context) to the header;
:func:`unpack` removes it so no handler ever sees it.

Requests and replies carry a *content*: the header's ``type`` says which, and bytes (a
file, a secret value) travel in the trailer so they are never base64-inflated::

    json   {"json": any}                      text   {"text": str}
    file   {"name", "mime_type"} + bytes      binary {"headers": {...}} + bytes
    empty  {}                                 error  {"text": str, "code": int?}

Headers are parsed strictly (no duplicate keys, no NaN, bounded nesting), as the native
codec does, so two parsers can never read one message differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from roomsvc import strict_json
from roomsvc.errors import InvalidRequest

LENGTH_BYTES = 8
MESHAGENT_KEY = "__meshagent__"


# -- packed payloads ---------------------------------------------------------------------


def pack(header: Mapping[str, Any], trailer: bytes = b"") -> bytes:
    """Header and trailer as one payload."""
    encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return len(encoded).to_bytes(LENGTH_BYTES, "big") + encoded + trailer


def unpack(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a payload into its JSON header (without ``__meshagent__``) and its trailer.

    Raises:
        InvalidRequest: the length prefix is wrong or the header is not a strict JSON object.
    """
    if len(payload) < LENGTH_BYTES:
        raise InvalidRequest("a payload must start with an 8-byte header length")
    size = int.from_bytes(payload[:LENGTH_BYTES], "big")
    end = LENGTH_BYTES + size
    if end > len(payload):
        raise InvalidRequest(f"the header length {size} exceeds the payload")
    header = strict_json.loads(payload[LENGTH_BYTES:end], what="payload header")
    if not isinstance(header, dict):
        raise InvalidRequest("a payload header must be a JSON object")
    header.pop(MESHAGENT_KEY, None)
    return header, payload[end:]


# -- contents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonContent:
    json: Any


@dataclass(frozen=True)
class TextContent:
    text: str


@dataclass(frozen=True)
class FileContent:
    name: str
    mime_type: str
    data: bytes = field(repr=False)  # a secret value on get_secret


@dataclass(frozen=True)
class BinaryContent:
    headers: dict[str, Any]
    data: bytes = field(repr=False)  # a secret value on set_secret


@dataclass(frozen=True)
class EmptyContent:
    pass


@dataclass(frozen=True)
class ErrorContent:
    text: str
    code: int | None = None


Content = JsonContent | TextContent | FileContent | BinaryContent | EmptyContent | ErrorContent


def content_header(content: Content) -> dict[str, Any]:
    """The JSON half of a content (what goes in an ``arguments`` field or a reply header)."""
    if isinstance(content, JsonContent):
        return {"type": "json", "json": content.json}
    if isinstance(content, TextContent):
        return {"type": "text", "text": content.text}
    if isinstance(content, FileContent):
        return {"type": "file", "name": content.name, "mime_type": content.mime_type}
    if isinstance(content, BinaryContent):
        return {"type": "binary", "headers": content.headers}
    if isinstance(content, ErrorContent):
        header: dict[str, Any] = {"type": "error", "text": content.text}
        if content.code is not None:
            header["code"] = content.code
        return header
    return {"type": "empty"}


def content_data(content: Content) -> bytes:
    return content.data if isinstance(content, (FileContent, BinaryContent)) else b""


def pack_content(content: Content) -> bytes:
    """A content as a whole payload (a ``__response__`` body)."""
    return pack(content_header(content), content_data(content))


def parse_content(header: Mapping[str, Any], data: bytes) -> Content:
    """A content from its JSON half and its bytes.

    Raises:
        InvalidRequest: unknown ``type`` or missing fields.
    """
    kind = header.get("type")
    if kind == "json":
        if "json" not in header:
            raise InvalidRequest("a json content needs a 'json' field")
        return JsonContent(header["json"])
    if kind == "text":
        return TextContent(_field(header, "text"))
    if kind == "file":
        return FileContent(_field(header, "name"), _field(header, "mime_type"), data)
    if kind == "binary":
        headers = header.get("headers", {})
        if not isinstance(headers, dict):
            raise InvalidRequest("a binary content's 'headers' must be an object")
        return BinaryContent(headers, data)
    if kind == "empty":
        return EmptyContent()
    if kind == "error":
        code = header.get("code")
        return ErrorContent(_field(header, "text"), code if isinstance(code, int) and not isinstance(code, bool) else None)
    shown = kind[:40] if isinstance(kind, str) else type(kind).__name__
    raise InvalidRequest(f"unsupported content type {shown!r}")


def unpack_content(payload: bytes) -> Content:
    header, data = unpack(payload)
    return parse_content(header, data)


def _field(header: Mapping[str, Any], key: str) -> str:
    value = header.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"a {header.get('type')} content needs a string {key!r}")
    return value
