"""Participant tokens: HS256 JWTs in MeshAgent's claim shape. PyJWT lives only here.

The algorithm is pinned by the server (HS256) and never taken from the token; the key
is chosen by ``kid`` (read from the payload, where MeshAgent puts it, or the header)
among the server's signing keys, so keys can rotate with several active at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Mapping

import jwt

from roomsvc import strict_json
from roomsvc.clock import Clock
from roomsvc.errors import InvalidRequest, Unauthenticated

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32
MAX_TOKEN_CHARS = 16384
#: the longest ``jti``/``kid``/``sub`` accepted (ids, not documents)
MAX_ID_CHARS = 256
#: one segment: base64url without padding or whitespace (RFC 7515 section 2)
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
#: tokens whose signature and claims were verified, remembered (issue 12): a socket or a
#: toolkit sends the same token with every request, and parsing it strictly plus the HMAC
#: was a fifth of a header resolution. Keyed by the token's SHA-256 (the token itself is
#: not kept), from a token's second use, oldest dropped first; a hit re-checks expiry, and revocation is checked by
#: the caller on every use as before, so both still take effect at once.
VERIFIED_CACHE_SIZE = 4096


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
        self._verified: dict[bytes, dict[str, Any]] = {}
        self._seen_once: dict[bytes, None] = {}

    def verify(self, token: str) -> dict[str, Any]:
        """Check signature and time claims; return the claims.

        Raises:
            Unauthenticated: with a reason that never echoes the token.
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("missing or oversized token")
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is not None:
            exp = known.get("exp")
            # PyJWT's own test, on the same clock (the wall clock) with the same leeway
            if exp is not None and int(exp) <= time.time() - self._leeway:
                del self._verified[digest]
                raise Unauthenticated("token expired")
            return dict(known)
        claims = self._verify(token)
        # remembered from its second use on: a websocket presents its token once, and
        # keeping the claims of every idle socket's token would cost memory for nothing
        if digest in self._seen_once:
            del self._seen_once[digest]
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]
            self._verified[digest] = claims
        else:
            if len(self._seen_once) >= VERIFIED_CACHE_SIZE:
                del self._seen_once[next(iter(self._seen_once))]
            self._seen_once[digest] = None
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        header, unverified = parse_strict(token)
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(f"token algorithm must be {ALGORITHM}")
        kid = unverified.get("kid", header.get("kid"))
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


def parse_strict(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and payload of a compact JWS, unverified, read strictly.

    Every segment is base64url without padding or whitespace (decoders that skip such
    characters would let two spellings of one token through filters and logs), header
    and payload are JSON objects without a repeated name (parsers differ on which copy
    wins), and ``kid``, ``jti`` and ``sub``, when present, are non-empty strings; a
    ``kid`` in both header and payload is the same in both.

    Raises:
        Unauthenticated: with a reason that never echoes the token.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise Unauthenticated("malformed token: a JWT has three dot-separated parts")
    if not all(_SEGMENT.fullmatch(part) and _canonical(part) for part in parts):
        raise Unauthenticated("malformed token: each part must be base64url without padding or whitespace")
    header = _json_segment(parts[0], "header")
    payload = _json_segment(parts[1], "payload")
    for where, claims in (("header", header), ("payload", payload)):
        for name in ("kid", "jti", "sub"):
            if name in claims:
                value = claims[name]
                if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
                    raise Unauthenticated(
                        f"token {where} '{name}' must be a string (non-empty, at most {MAX_ID_CHARS} characters)"
                    )
    if "kid" in header and "kid" in payload and header["kid"] != payload["kid"]:
        raise Unauthenticated("token 'kid' differs between header and payload")
    return header, payload


def _decode_segment(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _canonical(part: str) -> bool:
    """Only one spelling per value: a decoder ignores the unused low bits of the last
    character, so ``...Q`` and ``...R`` could both carry the same signature."""
    try:
        return base64.urlsafe_b64encode(_decode_segment(part)).decode().rstrip("=") == part
    except (binascii.Error, ValueError):
        return False


def _json_segment(part: str, what: str) -> dict[str, Any]:
    try:
        value = strict_json.loads(_decode_segment(part), what=f"token {what}")
    except InvalidRequest as exc:  # a duplicate claim name, a constant, too deep, not JSON
        raise Unauthenticated(f"malformed token: {exc.message}") from None
    except (binascii.Error, ValueError):
        raise Unauthenticated(f"malformed token: the {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise Unauthenticated(f"malformed token: the {what} is not a JSON object")
    return value


def new_token_id() -> str:
    """A fresh ``jti``: 128 random bits in hex, so it never starts with '-' and
    ``roomsvc token revoke --jti ID`` takes it as typed (a URL-safe id did, one time in 64)."""
    return secrets.token_hex(16)


def mint(keyring: SigningKeyring, claims: Mapping[str, Any], *, key: SigningKey | None = None) -> str:
    """Sign claims; every minted token gets a ``jti`` (so it can be revoked alone)."""
    signer = key or keyring.primary
    payload = dict(claims)
    payload.setdefault("kid", signer.kid)
    payload.setdefault("jti", new_token_id())
    return jwt.encode(payload, signer.secret, algorithm=ALGORITHM, headers={"kid": signer.kid})


def describe_unverified(token: str) -> dict[str, Any]:
    """The claims of a token without checking it (for ``roomsvc token --decode``)."""
    try:
        part = token.split(".")[1]
        return strict_json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)), what="token claims")
    except (IndexError, ValueError):
        raise InvalidRequest("not a JWT") from None
