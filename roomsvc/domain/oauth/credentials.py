"""The stored OAuth credential and the pure rules of its refresh.

A credential is a room secret of kind ``oauth`` owned by the consenting identity (or by
the ``delegate_to`` identity of the request), with id = the connector name (inline
configs: ``oauth:`` + a hash). Its value is the JSON of :class:`OAuthCredential`. The
refresh token (and an inline client's secret) never leave the server: reading the
secret through :class:`~roomsvc.domain.secrets.SecretService` gives the access token.

The credential remembers the token endpoint, revocation endpoint, client and allowed
hosts of the flow that created it; later requests cannot change them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from roomsvc.errors import InvalidRequest, OAuthError

ACTIVE = "active"
REAUTH_REQUIRED = "reauth_required"
CREDENTIAL_TYPE = "oauth"
#: expires_in values above this are treated as this (a year)
MAX_LIFETIME = 365 * 86400.0


@dataclass(frozen=True)
class TokenResponse:
    """A successful token endpoint answer (RFC 6749 5.1), already checked by the adapter."""

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    expires_in: float | None = None
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    id_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "TokenResponse":
        """Raises OAuthError when ``access_token`` is missing or a field has a wrong type."""
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OAuthError("the token endpoint's answer has no access_token")
        token_type = body.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() not in ("bearer", "dpop"):
            raise OAuthError("the token endpoint answered a token_type roomsvc does not use")
        refresh = body.get("refresh_token")
        scope = body.get("scope")
        id_token = body.get("id_token")
        return cls(
            access_token=token,
            token_type="Bearer" if token_type.lower() == "bearer" else token_type,
            expires_in=parse_expires_in(body.get("expires_in")),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            scope=scope if isinstance(scope, str) else None,
            id_token=id_token if isinstance(id_token, str) and id_token else None,
        )


@dataclass(frozen=True)
class OAuthCredential:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"
    #: epoch seconds; never None once stored (inferred when the provider sends none)
    expires_at: float = 0.0
    scopes: tuple[str, ...] = ()
    status: str = ACTIVE
    connector: str = ""
    issuer: str = ""
    client_id: str = ""
    token_endpoint: str = ""
    revocation_endpoint: str = ""
    token_endpoint_auth_method: str = "none"
    #: only for inline configs (connectors read theirs from the server's config)
    client_secret: str | None = field(default=None, repr=False)
    #: the upstream account (ID token ``sub`` or userinfo ``sub``), shown to people
    subject: str = ""
    #: identities P's consent covers: the requesters and delegate_to
    covers: tuple[str, ...] = ()
    consented_by: str = ""
    allowed_hosts: tuple[str, ...] = ()
    header_format: str = "Bearer {token}"
    created_at: float = 0.0
    refreshed_at: float = 0.0
    #: RFC 8707 resource the tokens are bound to (sent again on refresh); "" = none
    resource: str = ""

    # -- (de)serialisation --------------------------------------------------------------

    def to_bytes(self) -> bytes:
        data = asdict(self)
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "OAuthCredential":
        try:
            data = json.loads(raw)
        except ValueError:
            raise InvalidRequest("the stored OAuth credential is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the stored OAuth credential is not an object")
        known = {f for f in cls.__dataclass_fields__}
        values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**values)

    # -- rules ----------------------------------------------------------------------------

    def covers_identity(self, identity: str, owner: str) -> bool:
        return identity == owner or identity in self.covers

    def usable(self, now: float, margin: float) -> bool:
        """Active and not expiring within ``margin`` seconds."""
        return self.status == ACTIVE and self.expires_at - now > margin

    def unexpired(self, now: float) -> bool:
        return self.status == ACTIVE and self.expires_at > now

    def metadata(self) -> dict[str, Any]:
        """What may be shown about the credential: never a token or secret."""
        return {
            "status": self.status,
            "connector": self.connector,
            "issuer": self.issuer,
            "client_id": self.client_id,
            "subject": self.subject,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at,
            "covers": list(self.covers),
            "allowed_hosts": list(self.allowed_hosts),
            "header_format": self.header_format,
            "resource": self.resource,
        }


@dataclass(frozen=True)
class TokenGrant:
    """What a requester receives: the access token and metadata, never the refresh token."""

    access_token: str = field(repr=False)
    token_type: str
    expires_at: float
    credential: Mapping[str, Any]

    @classmethod
    def of(
        cls, cred: OAuthCredential, *, id: str, owner: str, version: int, delegated_to: str | None = None
    ) -> "TokenGrant":
        meta = {"id": id, "owner": owner, "delegated_to": delegated_to, "version": version, **cred.metadata()}
        return cls(cred.access_token, cred.token_type, cred.expires_at, meta)

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "credential": dict(self.credential),
        }


def parse_expires_in(value: object) -> float | None:
    """``expires_in`` as seconds, or None when absent or unusable (0, negative, not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return min(float(value), MAX_LIFETIME)


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT access token, unverified (only to schedule a refresh)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def expiry(response: TokenResponse, now: float, assumed_lifetime: float) -> float:
    """When the new access token expires: ``expires_in``, else its JWT ``exp``, else assumed."""
    if response.expires_in is not None:
        return now + response.expires_in
    exp = jwt_expiry(response.access_token)
    if exp is not None and now < exp <= now + MAX_LIFETIME:
        return exp
    return now + assumed_lifetime


def apply_refresh(cred: OAuthCredential, response: TokenResponse, now: float, assumed_lifetime: float) -> OAuthCredential:
    """Merge a refresh answer: a response without a refresh token keeps the old one;
    without ``scope`` the scopes stay as they were."""
    return replace(
        cred,
        access_token=response.access_token,
        refresh_token=response.refresh_token or cred.refresh_token,
        token_type=response.token_type,
        expires_at=expiry(response, now, assumed_lifetime),
        scopes=tuple(response.scope.split()) if response.scope else cred.scopes,
        status=ACTIVE,
        refreshed_at=now,
    )


def backoff_delays(retries: int, first: float) -> list[float]:
    """Delays before each retry of a transient refresh failure: ``first``, doubled, capped at 30 s."""
    return [min(first * (2**i), 30.0) for i in range(max(retries, 0))]
