"""Domain notices as MeshAgent pushes, free of I/O.

The domain addresses a typed notice (:mod:`roomsvc.domain.events`) to one participant;
for a MeshAgent participant :func:`notice_push` says what to send (docs/meshagent.md):

==============================  ===========================================================
notice                          MeshAgent push
==============================  ===========================================================
``SecretRequested``             ``secrets.request_secret`` ``{request_id, request}``
                                (SDK 0.44 ``_ClientRequestSecretRequest``)
``OAuthConsentRequested``       ``secrets.request_oauth_token`` ``{request_id, request,
                                challenge}`` (``_ClientRequestOAuthTokenRequest``); one
                                with a start link instead is not delivered (logged)
``RequestEnded``,               ``messaging.send`` from the participant itself, ``type`` =
``CredentialNeedsReauth``       ``secrets.request_ended`` / ``secrets.oauth_reauth_required``,
                                ``message`` = its fields: MeshAgent has no push for these,
                                and the SDK hands any such message to the app as a
                                ``message`` event
==============================  ===========================================================

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
from typing import Any, assert_never

from roomsvc.domain.events import (
    CredentialNeedsReauth,
    Notice,
    OAuthConsentRequested,
    RequestEnded,
    SecretRequested,
)
from roomsvc.domain.rooms import Capabilities

log = logging.getLogger("roomsvc.meshagent")

#: what a MeshAgent client declares at join: its app runs the OAuth redirect itself, so it
#: is asked with the PKCE challenge, never with a start link (which it could not answer)
CAPABILITIES = Capabilities(runs_own_redirect=True)

REQUEST_SECRET = "secrets.request_secret"
REQUEST_OAUTH_TOKEN = "secrets.request_oauth_token"
#: the message types of notices with no MeshAgent push of their own (sent as application messages)
REQUEST_ENDED = "secrets.request_ended"
REAUTH_REQUIRED = "secrets.oauth_reauth_required"
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
    if isinstance(notice, SecretRequested):
        return Push(REQUEST_SECRET, {
            "request_id": notice.request_id,
            "request": {
                "url": notice.url, "type": notice.type, "participant_id": notice.participant_id,
                "timeout": whole_seconds(notice.timeout), "delegate_to": notice.delegate_to,
            },
            **_ownership(notice.owner, notice.usable_by),
        })
    if isinstance(notice, OAuthConsentRequested):
        if not notice.by_app:
            # a start-link request: nothing a MeshAgent app can answer
            log.warning("an OAuth request with a start link reached a MeshAgent participant; not delivered")
            return None
        return Push(REQUEST_OAUTH_TOKEN, {
            "request_id": notice.request_id, "request": _oauth_request(notice), "challenge": notice.challenge,
            **_ownership(notice.owner, notice.usable_by),
        })
    if isinstance(notice, RequestEnded):
        return _as_message(recipient, REQUEST_ENDED, {"request_id": notice.request_id, "outcome": notice.outcome})
    if isinstance(notice, CredentialNeedsReauth):
        return _as_message(recipient, REAUTH_REQUIRED, {
            "id": notice.id, "connector": notice.connector, "subject": notice.subject, "reason": notice.reason,
        })
    assert_never(notice)


def _as_message(recipient: str, kind: str, message: dict[str, Any]) -> Push:
    return Push(MESSAGING_PUSH, {"from_participant_id": recipient, "type": kind, "message": message})


def _ownership(owner: str, usable_by: tuple[str, ...]) -> dict[str, Any]:
    """roomsvc's addition (the SDK ignores it): who will own the result and who may use it."""
    return {"owner": owner, "usable_by": list(usable_by)}


def _oauth_request(notice: OAuthConsentRequested) -> dict[str, Any]:
    """SDK ``_RequestOAuthTokenRequest`` with a resolved ``oauth`` and no client secret."""
    return {
        "connector": None,
        "oauth": {key: notice.oauth.get(key) for key in PUBLIC_OAUTH_FIELDS},
        "redirect_uri": notice.redirect_uri,
        "participant_id": notice.participant_id,
        "timeout": whole_seconds(notice.timeout),
        "delegate_to": notice.delegate_to,
    }


def whole_seconds(seconds: float) -> int:
    """The SDK types timeouts as int: round up, so a client never gives up early."""
    return max(1, math.ceil(seconds))
