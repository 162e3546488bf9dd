"""One authorization-code flow as a value, and the state machine it moves through.

::

    PENDING --open start link--> STARTED --callback--> EXCHANGING --> COMPLETED
       |                            |                       '-------> FAILED
       |--provide (MeshAgent way)---------------------------^
       '--reject / timeout / error--+--> REJECTED | EXPIRED | FAILED

Each move is one conditional write in storage (``UPDATE ... WHERE status IN (from)``),
so a state, a start ticket or a code is consumed at most once even when two requests
race. :func:`check_move` rejects illegal moves before anything is written.

Secrets of a flow (the start ticket, the state, the browser binding) are stored only as
SHA-256 hashes; the PKCE verifier is encrypted through the Cipher port.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping

from roomsvc.errors import InvalidTransition

#: link = roomsvc runs the redirect (start link + /oauth/callback), native participants;
#: app = the consenting participant's app runs it and answers with the code (MeshAgent way)
MODE_LINK = "link"
MODE_APP = "app"


class FlowStatus(enum.Enum):
    PENDING = "pending"
    STARTED = "started"
    EXCHANGING = "exchanging"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {FlowStatus.COMPLETED, FlowStatus.FAILED, FlowStatus.REJECTED, FlowStatus.EXPIRED}

#: target -> the states it may be entered from
MOVES: dict[FlowStatus, frozenset[FlowStatus]] = {
    FlowStatus.STARTED: frozenset({FlowStatus.PENDING}),
    FlowStatus.EXCHANGING: frozenset({FlowStatus.PENDING, FlowStatus.STARTED}),
    FlowStatus.COMPLETED: frozenset({FlowStatus.EXCHANGING}),
    FlowStatus.FAILED: frozenset({FlowStatus.PENDING, FlowStatus.STARTED, FlowStatus.EXCHANGING}),
    FlowStatus.REJECTED: frozenset({FlowStatus.PENDING, FlowStatus.STARTED}),
    FlowStatus.EXPIRED: frozenset({FlowStatus.PENDING, FlowStatus.STARTED}),
    FlowStatus.PENDING: frozenset(),
}


def check_move(flow_id: str, current: FlowStatus, target: FlowStatus) -> None:
    """Raises InvalidTransition when ``current -> target`` is not a legal move."""
    if current not in MOVES[target]:
        raise InvalidTransition(flow_id, current, target)


@dataclass(frozen=True)
class Flow:
    """A flow as stored (hashes only; the verifier stays encrypted in storage)."""

    id: str
    room: str
    mode: str
    status: FlowStatus
    requester: str  # identity asking for the token
    requester_participant: str
    consenter: str  # identity asked (P)
    consenter_participant: str
    owner: str  # identity the credential is stored for: always the consenter (P)
    delegate_to: str | None  # stored delegated_to this identity, when the request named one
    credential_id: str
    #: the resolved client config, without its secret (see ClientConfig)
    client: Mapping[str, Any]
    redirect_uri: str
    created_at: float
    #: the request's deadline: the start link and the whole flow die with it
    expires_at: float
    start_hash: str = ""
    state_hash: str = ""
    binding_hash: str = ""
    state_expires_at: float = 0.0
    error: str = ""

    def __repr__(self) -> str:
        return f"Flow(id={self.id[:8]}..., room={self.room!r}, status={self.status.value}, mode={self.mode})"


@dataclass(frozen=True)
class StartTicket:
    """Handed to the consenting participant inside its start link (never stored in clear)."""

    value: str = field(repr=False)

    @property
    def hash(self) -> str:
        return digest(self.value)


@dataclass(frozen=True)
class BrowserStart:
    """What opening a start link yields: where to send the browser, and the binding
    secret the browser keeps in a cookie until the callback."""

    flow_id: str
    authorization_url: str = field(repr=False)
    binding: str = field(repr=False)
    cookie_name: str
    max_age: float


@dataclass(frozen=True)
class StartPage:
    """What the person sees on a start link before going to the provider: who asks, for
    what, and whose credential it will be. Nothing secret."""

    requester: str
    room: str
    provider: str
    scopes: tuple[str, ...]
    owner: str
    usable_by: tuple[str, ...]
    expires_at: float
    #: where Continue leads (the provider's authorization endpoint), for the page's CSP
    authorization_endpoint: str = ""


@dataclass(frozen=True)
class CallbackResult:
    connector: str
    subject: str
    room: str
    owner: str
    #: the browser binding cookie, to clear
    cookie: str = ""


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random string with ``8 * nbytes`` bits of entropy (256 by default)."""
    return secrets.token_urlsafe(nbytes)


def new_verifier() -> str:
    """A PKCE code verifier: 32 random bytes, 43 base64url characters (RFC 7636 4.1)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same_secret(value: str | None, expected_hash: str) -> bool:
    """``value`` hashes to ``expected_hash`` (constant-time comparison)."""
    if not value or not expected_hash:
        return False
    return hmac.compare_digest(digest(value), expected_hash)


def cookie_name(flow_id: str) -> str:
    """One cookie per flow, so several flows can run in one browser at once."""
    return "roomsvc_oauth_" + digest(flow_id)[:16]


def verifier_aad(flow_id: str) -> bytes:
    return json.dumps(["roomsvc/oauth-verifier/v1", flow_id], separators=(",", ":")).encode()


def iss_ok(received: str | None, issuer: str, *, required: bool) -> bool:
    """RFC 9207: an ``iss`` that is present must equal the issuer exactly (no
    normalisation); it must be present when the provider advertises it. An inline
    config has no known issuer, so there is nothing to compare an ``iss`` with."""
    if received is None:
        return not required
    if not issuer:
        return not required
    return hmac.compare_digest(received.encode(), issuer.encode())
