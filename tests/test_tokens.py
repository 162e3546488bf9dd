"""Participant tokens: the algorithm and keys are the server's; claims have MeshAgent's shape."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from roomsvc.clock import SystemClock
from roomsvc.crypto.keys import api_key_for, keyring_from_api_key, new_signing_keyring
from roomsvc.crypto.tokens import SigningKey, SigningKeyring, TokenVerifier, mint
from roomsvc.domain.principal import build_claims, principal_from_claims
from roomsvc.errors import InvalidRequest, PermissionDenied, Unauthenticated

CLOCK = SystemClock()
KEYRING = new_signing_keyring()
OTHER = new_signing_keyring()


def claims(**extra: object) -> dict:
    base = build_claims(identity="alice", room="r1", role="agent", api={"secrets": {}}, issued_at=int(CLOCK.now()), ttl=600)
    base.update(extra)
    return base


def verify(token: str, **kwargs: object) -> dict:
    return TokenVerifier(KEYRING, clock=CLOCK, **kwargs).verify(token)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_minted_token_verifies_and_names_the_principal() -> None:
    principal = principal_from_claims(verify(mint(KEYRING, claims())))
    assert principal.identity == "alice" and principal.room == "r1" and principal.role == "agent"
    assert principal.has_api("secrets") and not principal.has_api("admin")
    principal.require_room("r1")
    with pytest.raises(PermissionDenied):
        principal.require_room("r2")
    with pytest.raises(PermissionDenied):
        principal.require_api("admin")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: mint(OTHER, claims()), "unknown key"),
        (lambda: mint(OTHER, claims(), key=SigningKey(KEYRING.primary.kid, OTHER.primary.secret)), "signature does not verify"),
        (lambda: mint(OTHER, claims(kid=KEYRING.primary.kid)), "'kid' differs between header and payload"),
        (lambda: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims(kid=KEYRING.primary.kid))}.", "algorithm must be HS256"),
        (lambda: jwt.encode(claims(), KEYRING.primary.secret * 2, algorithm="HS512", headers={"kid": KEYRING.primary.kid}), "algorithm must be HS256"),
        (lambda: mint(KEYRING, claims(exp=int(CLOCK.now()) - 120)), "expired"),
        (lambda: mint(KEYRING, {k: v for k, v in claims().items() if k != "exp"}), "no 'exp'"),
        (lambda: mint(KEYRING, claims(exp="9999999999")), "invalid token claims"),
        (lambda: mint(KEYRING, claims(iat=int(CLOCK.now()) + 3600)), "not valid yet"),
        (lambda: mint(KEYRING, claims(exp=int(CLOCK.now()) + 10 * 365 * 86400)), "lifetime exceeds"),
        (lambda: "not-a-jwt", "malformed"),
        (lambda: "", "missing"),
        (lambda: mint(KEYRING, claims(kid=123)), "'kid' must be a string"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(make, reason: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        verify(make())
    assert reason in info.value.message


def test_expired_within_leeway_is_accepted_and_exp_can_be_made_optional() -> None:
    verify(mint(KEYRING, claims(exp=int(CLOCK.now()) - 30)))
    no_exp = mint(KEYRING, {k: v for k, v in claims().items() if k != "exp"})
    assert verify(no_exp, require_exp=False)["name"] == "alice"


def test_kid_in_header_only_and_no_kid_use_the_keyring() -> None:
    payload = {k: v for k, v in claims().items() if k != "kid"}
    header_only = jwt.encode(payload, KEYRING.primary.secret, algorithm="HS256", headers={"kid": KEYRING.primary.kid})
    assert verify(header_only)["name"] == "alice"
    no_kid = jwt.encode(payload, KEYRING.primary.secret, algorithm="HS256")
    assert verify(no_kid)["name"] == "alice"


def test_several_keys_verify_so_keys_can_rotate() -> None:
    old, new = new_signing_keyring().primary, new_signing_keyring().primary
    ring = SigningKeyring(keys=(new, old), project_id=KEYRING.project_id)
    token_old = mint(ring, claims(), key=old)
    assert TokenVerifier(ring, clock=CLOCK).verify(token_old)["name"] == "alice"
    assert jwt.get_unverified_header(mint(ring, claims()))["kid"] == new.kid


def test_short_keys_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        SigningKey("k", b"short")


def test_meshagent_shaped_claims_parse() -> None:
    # what the MeshAgent SDK 0.44 puts in a token: kid and sub in the payload, version, api sections as {}
    raw = {
        "name": "support-agent",
        "grants": [{"name": "room", "scope": "r1"}, {"name": "role", "scope": "agent"},
                   {"name": "api", "scope": {"messaging": {}, "admin": {}, "secrets": {}}}],
        "version": "0.44.0", "kid": KEYRING.primary.kid, "sub": KEYRING.project_id, "exp": int(CLOCK.now()) + 60,
    }
    token = jwt.encode(raw, KEYRING.primary.secret.decode(), algorithm="HS256")
    p = principal_from_claims(verify(token))
    assert (p.identity, p.room, p.role, p.is_admin, p.subject) == ("support-agent", "r1", "agent", True, KEYRING.project_id)


@pytest.mark.parametrize(
    "bad",
    [
        {"grants": []},
        {"name": "a", "grants": {}},
        {"name": "a b", "grants": []},
        {"name": "a", "grants": [{"name": "room", "scope": "R\u200b1"}]},
        {"name": "a", "grants": [{"name": "room", "scope": "r1"}, {"name": "room", "scope": "r2"}]},
        {"name": "a", "grants": [{"name": "role", "scope": "king"}]},
        {"name": "a", "grants": [{"name": "api", "scope": 5}]},
        {"name": "a", "grants": ["room"]},
    ],
)
def test_malformed_claims_are_unauthenticated(bad: dict) -> None:
    with pytest.raises(Unauthenticated):
        principal_from_claims(bad)


def test_an_operator_token_has_no_room_and_the_admin_section() -> None:
    p = principal_from_claims(build_claims(identity="operator", room=None, api={"admin": {}}, issued_at=0, ttl=60))
    assert p.is_operator and p.room is None


def test_api_key_round_trip_keeps_the_key_usable() -> None:
    key = api_key_for(KEYRING)
    assert key.startswith("ma-") and key.count("-") >= 3
    parsed = keyring_from_api_key(key)
    assert parsed.primary == KEYRING.primary and parsed.project_id == KEYRING.project_id
    with pytest.raises(InvalidRequest):
        keyring_from_api_key("sk-nope")


def test_minted_token_ids_never_look_like_a_cli_option() -> None:
    """``roomsvc token revoke --jti ID`` must take every id as typed: an id starting with
    '-' was read by argparse as another option (seen once a full run, with URL-safe ids)."""
    from roomsvc.crypto.tokens import new_token_id

    ids = {new_token_id() for _ in range(2000)}
    assert len(ids) == 2000 and all(len(i) == 32 and not i.startswith("-") and i.isalnum() for i in ids)


def test_a_deeply_nested_token_is_refused_as_malformed_not_an_internal_error() -> None:
    """Token JSON goes through the strict parser: 2,000 levels of nesting used to escape
    the verifier as a RecursionError (an internal error for an unauthenticated caller)."""
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    payload = base64.urlsafe_b64encode(b'{"a":' * 2000 + b"1" + b"}" * 2000).decode().rstrip("=")
    with pytest.raises(Unauthenticated, match="malformed token"):
        verify(f"{header}.{payload}.c2ln")


def test_a_hostile_id_token_from_a_provider_gives_no_subject() -> None:
    from roomsvc.integrations.oauth_provider import AiohttpOAuthProvider

    deep = base64.urlsafe_b64encode(b'{"a":' * 2000 + b"1" + b"}" * 2000).decode().rstrip("=")
    twice = base64.urlsafe_b64encode(b'{"sub":"alice","sub":"mallory"}').decode().rstrip("=")
    provider = AiohttpOAuthProvider(connect_timeout=1, timeout=1, max_response_size=1024)
    assert provider.id_token_subject(f"h.{deep}.s") is None
    assert provider.id_token_subject(f"h.{twice}.s") is None  # one parser, one reading


def test_a_remembered_token_still_expires_and_a_tampered_one_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified tokens are remembered (issue 12): a hit re-checks expiry on the wall clock,
    as PyJWT does, and only the exact token string hits."""
    import time

    import roomsvc.crypto.tokens as tokens_module

    verifier = TokenVerifier(KEYRING, clock=CLOCK, leeway=0)
    token = mint(KEYRING, claims(exp=int(time.time()) + 30))
    verifier.verify(token)
    first = verifier.verify(token)  # remembered from the second use on
    first["name"] = "mallory"  # callers get a copy: the remembered claims stay as verified
    assert verifier.verify(token)["name"] == "alice"
    header, payload, signature = token.split(".")
    forged = ".".join([header, _b64({**json.loads(base64.urlsafe_b64decode(payload + "==")), "name": "mallory"}), signature])
    with pytest.raises(Unauthenticated, match="signature"):
        verifier.verify(forged)
    real_time = time.time
    monkeypatch.setattr(tokens_module.time, "time", lambda: real_time() + 31)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)
