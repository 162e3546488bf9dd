"""Packed payloads and the content envelope, checked against bytes the SDK produces."""

from __future__ import annotations

import json

import pytest

from roomsvc.errors import InvalidRequest
from roomsvc.transport.meshagent.packing import (
    BinaryContent,
    EmptyContent,
    ErrorContent,
    FileContent,
    JsonContent,
    TextContent,
    pack,
    pack_content,
    parse_content,
    unpack,
    unpack_content,
)


def sdk_pack(header: dict, data: bytes = b"") -> bytes:
    """What meshagent.api.messaging.pack_message sends (trace context included)."""
    raw = json.dumps({**header, "__meshagent__": {"v": 1, "otel": {"traceparent": "00-abc-01"}}}).encode()
    return len(raw).to_bytes(8, "big") + raw + data


def test_unpack_strips_the_meshagent_key_and_keeps_the_trailer() -> None:
    header, trailer = unpack(sdk_pack({"toolkit": "secrets", "tool": "set_secret"}, b"\x00\xffvalue"))
    assert header == {"toolkit": "secrets", "tool": "set_secret"}
    assert trailer == b"\x00\xffvalue"


def test_pack_round_trips() -> None:
    assert unpack(pack({"a": [1, "é"]}, b"tail")) == ({"a": [1, "é"]}, b"tail")


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\x00" * 4, "8-byte header length"),
        ((100).to_bytes(8, "big") + b"{}", "exceeds the payload"),
        ((2).to_bytes(8, "big") + b"[]", "JSON object"),
        ((7).to_bytes(8, "big") + b'{"a":1,', "invalid JSON"),
        ((15).to_bytes(8, "big") + b'{"a":1,"a":2}xx', "duplicate key"),
        ((9).to_bytes(8, "big") + b'{"a":NaN}', "NaN"),
        ((2).to_bytes(8, "big") + b"\xff\xfe", "UTF-8"),
    ],
)
def test_bad_payloads_are_invalid_requests(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        unpack(payload)


def test_deep_nesting_is_refused() -> None:
    header = ('{"a":' + "[" * 40 + "]" * 40 + "}").encode()
    with pytest.raises(InvalidRequest, match="deeper"):
        unpack(len(header).to_bytes(8, "big") + header)


@pytest.mark.parametrize(
    "content, header",
    [
        (JsonContent({"exists": True}), {"type": "json", "json": {"exists": True}}),
        (TextContent("hi"), {"type": "text", "text": "hi"}),
        (FileContent("n", "text/plain", b"data"), {"type": "file", "name": "n", "mime_type": "text/plain"}),
        (BinaryContent({"secret_id": "a"}, b"v"), {"type": "binary", "headers": {"secret_id": "a"}}),
        (EmptyContent(), {"type": "empty"}),
        (ErrorContent("secret 's1' not found", 1003), {"type": "error", "text": "secret 's1' not found", "code": 1003}),
        (ErrorContent("no code"), {"type": "error", "text": "no code"}),
    ],
)
def test_contents_have_the_sdk_headers_and_round_trip(content, header: dict) -> None:
    payload = pack_content(content)
    assert unpack(payload)[0] == header
    assert unpack_content(payload) == content


def test_sdk_binary_arguments_parse() -> None:
    """set_secret's arguments: the content header sits in the invoke header, bytes in the trailer."""
    content = parse_content({"type": "binary", "headers": {"secret_id": "s", "has_data": True}}, b"\x01\x02")
    assert content == BinaryContent({"secret_id": "s", "has_data": True}, b"\x01\x02")


@pytest.mark.parametrize(
    "header",
    [{"type": "link", "name": "x", "url": "y"}, {}, {"type": "file", "name": "x"}, {"type": "binary", "headers": []},
     {"type": "json"}],
)
def test_unsupported_or_incomplete_contents_are_refused(header: dict) -> None:
    with pytest.raises(InvalidRequest):
        parse_content(header, b"")


def test_reprs_hide_secret_bytes() -> None:
    assert "hunter2" not in repr(FileContent("n", "t", b"hunter2"))
    assert "hunter2" not in repr(BinaryContent({}, b"hunter2"))
