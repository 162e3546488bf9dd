"""Reading request fields, once for every transport.

The native websocket ops, the MeshAgent tools and the HTTP handlers all read their
fields from a JSON object with these functions, so a field means the same thing and
fails with the same :class:`~roomsvc.errors.InvalidRequest` wherever it arrives. None
of them puts a field's value in an error message: only its name.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping

from roomsvc.errors import InvalidRequest

Fields = Mapping[str, Any]


def opt_str(data: Fields, key: str) -> str | None:
    """A string field; absent, null and ``""`` are all None."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string")
    return value


def req_str(data: Fields, key: str) -> str:
    value = opt_str(data, key)
    if value is None:
        raise InvalidRequest(f"'{key}' must be a non-empty string")
    return value


def opt_version(data: Fields, key: str = "expected_version") -> int | None:
    """A version number for compare-and-swap, or None."""
    value = data.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise InvalidRequest(f"'{key}' must be a non-negative integer")
    return value


def opt_seconds(data: Fields, key: str = "timeout", *, most: float | None = None) -> float | None:
    """A duration in seconds, or None when absent or null (the caller's default).

    With ``most`` the value must lie in ``(0, most]``; without it the service checks
    the range.
    """
    value = data.get(key)
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if most is not None and not (number and 0 < value <= most):
        raise InvalidRequest(f"'{key}' must be a number of seconds in (0, {most:g}]")
    if not number:
        raise InvalidRequest(f"'{key}' must be a number of seconds")
    return float(value)


def asked_participant(data: Fields) -> str:
    """The participant a request asks (for a secret or an OAuth consent).

    roomsvc names it ``from_participant_id``; the MeshAgent SDK sends ``participant_id``.
    Both are read on both protocols; when both are given, ``from_participant_id`` wins
    (docs/protocol.md, docs/meshagent.md).
    """
    key = "from_participant_id" if data.get("from_participant_id") is not None else "participant_id"
    if data.get(key) is None:
        raise InvalidRequest("'from_participant_id' (or 'participant_id') must be a non-empty string")
    return req_str(data, key)


#: ConnectorRef fields that name something roomsvc does not have
_FOREIGN_CONNECTOR_FIELDS = ("server_url", "client_secret_id")


def connector_name(value: object) -> str | None:
    """A roomsvc connector named by a request's ``connector``.

    Native clients give the name as a string. SDK 0.44 types it as ``ConnectorRef
    {openai_connector_id, server_url, client_secret_id}``; roomsvc reads
    ``openai_connector_id`` as the connector's name (the only name a ConnectorRef carries).

    Raises:
        InvalidRequest: another shape, or a ConnectorRef naming an MCP server or a client
        secret (not supported here).
    """
    if value is None or isinstance(value, str):
        return value or None
    if not isinstance(value, dict):
        raise InvalidRequest("'connector' must be a connector name or a ConnectorRef object")
    for key in _FOREIGN_CONNECTOR_FIELDS:
        if value.get(key) is not None:
            raise InvalidRequest(
                f"'connector.{key}' is not supported: name a roomsvc connector as 'connector.openai_connector_id'"
            )
    return opt_str(value, "openai_connector_id")


def oauth_client(data: Fields) -> dict[str, Any]:
    """``connector`` and ``oauth`` (an inline OAuthClientConfig), as the OAuth service takes them."""
    oauth = data.get("oauth")
    if oauth is not None and not isinstance(oauth, dict):
        raise InvalidRequest("'oauth' must be an OAuthClientConfig object")
    fields: dict[str, Any] = {"connector": connector_name(data.get("connector")), "oauth": oauth}
    if data.get("mcp") is not None:  # issue 17: {"url", "scopes"?, "www_authenticate"?}
        fields["mcp"] = data["mcp"]
    return fields


# -- bytes --------------------------------------------------------------------------------------


def b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data is not None else None


def unb64(value: Any, key: str, *, limit: int | None = None) -> bytes:
    """Base64 text to bytes; with ``limit``, text that would decode to more is refused unread."""
    if not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be base64 text")
    if limit is not None and len(value) > (limit * 4) // 3 + 8:
        raise InvalidRequest(f"'{key}' is larger than {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{key}' is not valid base64") from None


def opt_unb64(value: Any, key: str, *, limit: int | None = None) -> bytes | None:
    return None if value is None else unb64(value, key, limit=limit)


def value_or_text(data: Fields, *, binary: tuple[str, ...], hint: str, limit: int | None = None) -> bytes:
    """A secret value given as exactly one of the base64 fields ``binary`` or as UTF-8 ``text``.

    Raises:
        InvalidRequest: none or several given (``hint`` says how to give it), or a bad field.
    """
    sources = [k for k in (*binary, "text") if data.get(k) is not None]
    if len(sources) != 1:
        raise InvalidRequest(hint)
    if sources[0] == "text":
        if not isinstance(data["text"], str):
            raise InvalidRequest("'text' must be a string")
        return str(data["text"]).encode()
    return unb64(data[sources[0]], sources[0], limit=limit)


# -- credentials ---------------------------------------------------------------------------------


def bearer(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if authorization[:7].lower() != "bearer ":
        return None
    return authorization[7:].strip() or None
