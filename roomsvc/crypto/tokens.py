"""Participant tokens: HS256 JWTs in MeshAgent's claim shape. PyJWT lives only here.

The algorithm is pinned by the server (HS256) and never taken from the token; the key
is chosen by ``kid`` (read from the payload, where MeshAgent puts it, or the header)
among the server's signing keys, so keys can rotate with several active at once.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Mapping

import jwt

from roomsvc.clock import Clock
from roomsvc.errors import InvalidRequest, Unauthenticated

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise InvalidRequest(f"signing key {self.kid!r} is shorter than 256 bits")

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, <hidden>)"


@dataclass(frozen=True)
class SigningKeyring:
    """The server's signing keys; the first one signs, all of them verify."""

    keys: tuple[SigningKey, ...]
    project_id: str

    @property
    def primary(self) -> SigningKey:
        return self.keys[0]

    def find(self, kid: str | None) -> SigningKey | None:
        if kid is None:
            return self.primary
        for key in self.keys:
            if key.kid == kid:
                return key
        return None


class TokenVerifier:
    def __init__(
        self, keyring: SigningKeyring, *, clock: Clock, require_exp: bool = True, leeway: int = 60, max_ttl: int = 86400
    ) -> None:
        self._keyring = keyring
        self._clock = clock
        self._require_exp = require_exp
        self._leeway = leeway
        self._max_ttl = max_ttl

    def verify(self, token: str) -> dict[str, Any]:
        """Check signature and time claims; return the claims.

        Raises:
            Unauthenticated: with a reason that never echoes the token.
        """
        if not isinstance(token, str) or not token or len(token) > 16384:
            raise Unauthenticated("missing or oversized token")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(f"token algorithm must be {ALGORITHM}")
        kid = unverified.get("kid", header.get("kid"))
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("token 'kid' must be a string")
        key = self._keyring.find(kid)
        if key is None:
            raise Unauthenticated("token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key.secret,
                algorithms=[ALGORITHM],
                # a literal, so mypy checks it against PyJWT's ``Options`` TypedDict
                options={"require": ["exp"] if self._require_exp else [], "verify_aud": False, "verify_iss": False},
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.MissingRequiredClaimError:
            raise Unauthenticated("token has no 'exp' claim (mint it with an expiration)") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token is not valid yet (iat or nbf in the future)") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token claims") from None
        exp = claims.get("exp")
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise Unauthenticated(f"invalid token claims: '{name}' must be a number")
        if exp is not None and exp - self._clock.now() > self._max_ttl + self._leeway:
            raise Unauthenticated("token lifetime exceeds tokens.max_ttl")
        return claims


def mint(keyring: SigningKeyring, claims: Mapping[str, Any], *, key: SigningKey | None = None) -> str:
    signer = key or keyring.primary
    payload = dict(claims)
    payload.setdefault("kid", signer.kid)
    return jwt.encode(payload, signer.secret, algorithm=ALGORITHM, headers={"kid": signer.kid})


def describe_unverified(token: str) -> dict[str, Any]:
    """The claims of a token without checking it (for ``roomsvc token --decode``)."""
    try:
        part = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        raise InvalidRequest("not a JWT") from None
