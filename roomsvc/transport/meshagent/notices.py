"""Domain notices as MeshAgent pushes, free of I/O.

The domain addresses a :class:`~roomsvc.domain.events.Notice` to one participant; for a
MeshAgent participant :func:`notice_push` says what to send instead (docs/meshagent.md):

=================================  ========================================================
notice kind                        MeshAgent push
=================================  ========================================================
``secrets.request_secret``         ``secrets.request_secret`` ``{request_id, request}``
                                   (SDK 0.44 ``_ClientRequestSecretRequest``)
``secrets.request_oauth_token``    ``secrets.request_oauth_token`` ``{request_id, request,
                                   challenge}`` (``_ClientRequestOAuthTokenRequest``)
``secrets.request_ended``,         ``messaging.send`` from the participant itself, ``type`` =
``secrets.oauth_reauth_required``  the notice kind, ``message`` = its data: MeshAgent has no
                                   push for these, and the SDK hands any such message to
                                   the app as a ``message`` event
anything else                      nothing (logged at debug level)
=================================  ========================================================

The SDK validates both request pushes with pydantic models, so the shapes are exact:
``timeout`` is an integer, ``oauth`` is an ``OAuthClientConfig`` (``extra="forbid"``)
built from an allow-list of keys, so the client secret can never reach a client, and
``connector`` is null (the SDK reads it as a ``ConnectorRef``, which a roomsvc
connector name is not; ``oauth`` already holds the resolved client).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from roomsvc.domain.events import Notice

log = logging.getLogger("roomsvc.meshagent")

REQUEST_SECRET = "secrets.request_secret"
REQUEST_OAUTH_TOKEN = "secrets.request_oauth_token"
#: notices with no MeshAgent push of their own, sent as application messages
AS_MESSAGES = frozenset({"secrets.request_ended", "secrets.oauth_reauth_required"})
MESSAGING_PUSH = "messaging.send"
#: the fields of MeshAgent's OAuthClientConfig a consenting app may see (never client_secret)
PUBLIC_OAUTH_FIELDS = ("client_id", "authorization_endpoint", "token_endpoint", "no_pkce", "scopes")


@dataclass(frozen=True)
class Push:
    """One server push: message type, JSON header, binary trailer."""

    type: str
    header: dict[str, Any]
    trailer: bytes = field(default=b"", repr=False)


def notice_push(notice: Notice, recipient: str) -> Push | None:
    """What a MeshAgent participant (id ``recipient``) is sent for ``notice``, if anything."""
    data = notice.data
    if notice.kind == REQUEST_SECRET:
        return Push(REQUEST_SECRET, {
            "request_id": data["request_id"], "request": _secret_request(data["request"]), **_ownership(data),
        })
    if notice.kind == REQUEST_OAUTH_TOKEN:
        if "challenge" not in data:
            # a start-link request (native consenters only): nothing a MeshAgent app can answer
            log.warning("an OAuth request with a start link reached a MeshAgent participant; not delivered")
            return None
        header = {"request_id": data["request_id"], "request": _oauth_request(data["request"])}
        return Push(REQUEST_OAUTH_TOKEN, {**header, "challenge": data["challenge"], **_ownership(data)})
    if notice.kind in AS_MESSAGES:
        return Push(
            MESSAGING_PUSH, {"from_participant_id": recipient, "type": notice.kind, "message": dict(data)},
            notice.attachment or b"",
        )
    log.debug("notice %r has no MeshAgent form; not delivered", notice.kind)
    return None


def _ownership(data: Mapping[str, Any]) -> dict[str, Any]:
    """roomsvc's addition (the SDK ignores it): who will own the result and who may use it."""
    return {"owner": data.get("owner"), "usable_by": list(data.get("usable_by") or ())}


def _secret_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """SDK ``SecretRequestInfo``: ``{url, type, participant_id, timeout, delegate_to}``."""
    return {
        "url": request["url"], "type": request["type"], "participant_id": request["participant_id"],
        "timeout": whole_seconds(request["timeout"]), "delegate_to": request.get("delegate_to"),
    }


def _oauth_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """SDK ``_RequestOAuthTokenRequest`` with a resolved ``oauth`` and no client secret."""
    oauth = request.get("oauth") or {}
    return {
        "connector": None,
        "oauth": {key: oauth.get(key) for key in PUBLIC_OAUTH_FIELDS},
        "redirect_uri": request["redirect_uri"],
        "participant_id": request["participant_id"],
        "timeout": whole_seconds(request["timeout"]),
        "delegate_to": request.get("delegate_to"),
    }


def whole_seconds(seconds: float) -> int:
    """The SDK types timeouts as int: round up, so a client never gives up early."""
    return max(1, math.ceil(seconds))
