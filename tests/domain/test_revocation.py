"""The pure revocation rule: which principals a revocation list refuses."""

from __future__ import annotations

from roomsvc.domain.ports import Revocation
from roomsvc.domain.principal import Principal
from roomsvc.domain.revocation import RevocationList, expiry_reason, revocation_reason
from roomsvc.ids import Identity, RoomName


def who(identity: str = "alice", room: str | None = "r1", *, jti: str | None = "t1", iat: float | None = 100.0) -> Principal:
    return Principal(identity=Identity(identity), room=RoomName(room) if room else None, token_id=jti, issued_at=iat)


def by_identity(identity: str, before: float, room: str | None = None) -> Revocation:
    return Revocation("identity", identity, room, before, "operator", before)


def test_a_jti_revocation_refuses_that_token_only() -> None:
    revoked = RevocationList.of([Revocation("jti", "t1", None, 50, "operator", 50)])
    assert revocation_reason(who(jti="t1"), revoked) == "token revoked"
    assert revocation_reason(who(jti="t2"), revoked) is None
    assert revocation_reason(who(jti=None), revoked) is None


def test_an_identity_revocation_refuses_older_tokens_and_tokens_without_iat() -> None:
    revoked = RevocationList.of([by_identity("alice", 200)])
    assert revocation_reason(who(iat=199), revoked) is not None
    assert revocation_reason(who(iat=None), revoked) is not None
    assert revocation_reason(who(iat=200), revoked) is None
    assert revocation_reason(who("bob", iat=10), revoked) is None
    assert revocation_reason(who(room=None, iat=10), revoked) is not None  # every room, and project tokens


def test_a_room_scoped_identity_revocation_spares_other_rooms() -> None:
    revoked = RevocationList.of([by_identity("alice", 200, room="r2")])
    assert revocation_reason(who(room="r2", iat=10), revoked) is not None
    assert revocation_reason(who(room="r1", iat=10), revoked) is None
    assert revocation_reason(who(room=None, iat=10), revoked) is None


def test_the_latest_identity_revocation_wins_and_adding_keeps_the_list_immutable() -> None:
    first = RevocationList.of([by_identity("alice", 300), by_identity("alice", 200)])
    assert revocation_reason(who(iat=250), first) is not None
    grown = RevocationList().adding(by_identity("alice", 300))
    assert revocation_reason(who(iat=250), grown) is not None
    assert revocation_reason(who(iat=250), RevocationList()) is None


def test_expiry_counts_the_leeway() -> None:
    p = Principal(identity=Identity("alice"), room=None, expires_at=1000.0)
    assert expiry_reason(p, 1000.0, 0) is None
    assert expiry_reason(p, 1000.5, 0) == "token expired"
    assert expiry_reason(p, 1000.5, 1) is None
    assert expiry_reason(Principal(identity=Identity("alice"), room=None), 1e12, 0) is None
