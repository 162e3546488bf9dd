"""Identifiers and secret-holding values, as types rather than bare strings.

Room names, identities and secret ids are checked once at the edge with the
``parse_*`` helpers, so the rest of the code can trust them. Only plain ASCII is
accepted: no case folding, no Unicode look-alikes, no zero-width or control
characters, so one room can never be aliased as another.
"""

from __future__ import annotations

import re
from typing import NewType

from roomsvc.errors import InvalidRequest

RoomName = NewType("RoomName", str)
Identity = NewType("Identity", str)
ParticipantId = NewType("ParticipantId", str)
SecretId = NewType("SecretId", str)

_ROOM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+:-]{0,127}")
_SECRET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,255}")


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = value if isinstance(value, str) and value.isprintable() and len(value) < 80 else None
        detail = f" {shown!r}" if shown is not None else ""
        raise InvalidRequest(
            f"invalid {what}{detail}: use ASCII letters, digits and {_allowed(pattern)}, "
            f"starting with a letter or digit"
        )
    return value


def _allowed(pattern: re.Pattern[str]) -> str:
    extra = pattern.pattern.split("]")[1].split("[")[1].replace("A-Za-z0-9", "")
    return " ".join(repr(c) for c in extra)


def parse_room(value: object) -> RoomName:
    return RoomName(_check(_ROOM, value, "room name"))


def parse_identity(value: object) -> Identity:
    return Identity(_check(_IDENTITY, value, "identity"))


def parse_secret_id(value: object) -> SecretId:
    return SecretId(_check(_SECRET_ID, value, "secret id"))


def parse_name(value: object, what: str) -> str:
    """A client-chosen name that ends up in log or audit lines (a toolkit, a message type):
    the identity character set and length, so it can never carry a newline or a
    terminal escape into them."""
    return _check(_IDENTITY, value, what)


class SecretBytes:
    """Bytes that never show themselves in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError("SecretBytes holds bytes")
        self._value = bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretBytes(<{len(self._value)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretBytes) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretStr:
    """A string setting (a key, a password) whose repr is masked."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
