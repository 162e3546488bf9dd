"""roomsvc.domain.policy, without a server: the written-down answers, and the docs table.

The table below is written by hand, from the rules in docs/vault.md, not computed from
the code; the end-to-end matrix (tests/vault/test_policy_matrix.py) then checks that every
transport gives the policy's answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

import pytest

from roomsvc.domain.policy import Action, Address, Outcome, decide, table
from roomsvc.domain.principal import Principal
from roomsvc.ids import Identity, RoomName

NOW = 1_000_000.0
#: alice's secret in room1, delegated to bob; requests ask erin (participant p-erin)
TARGET = Address("room1", "alice", "github", "bob", asked_identity="erin", asked_participant="p-erin")


def who(identity: str, room: str | None = "room1", *, api: dict[str, object] | None = None,
        expires_at: float | None = None) -> Principal:
    return Principal(
        identity=Identity(identity), room=RoomName(room) if room else None,
        api=MappingProxyType({"secrets": {}} if api is None else api), expires_at=expires_at,
    )


PRINCIPALS = {
    "owner": who("alice"),
    "delegate": who("bob"),
    "other": who("carol"),
    "admin": who("dave", api={"secrets": {}, "admin": {}}),
    "asked": who("erin"),
    "use_only": who("alice", api={"secrets": {"use_only": True}}),
    "no_grant": who("alice", api={"admin": {}}),
    "other_room": who("alice", "room2"),
    "operator": who("ops", None, api={"admin": {}}),
    "expired": who("alice", expires_at=NOW - 1),
}

# o = ok, d = denied, i = invalid, u = unauthenticated
#              read use exists list write delegate delete versions request answer
_TABLE = """
owner         o    o   o      o    o     o        o      o        o       d
delegate      o    o   o      d    d     d        d      d        o       d
other         d    d   d      d    d     d        d      d        o       d
admin         o    o   o      o    o     o        o      o        o       d
asked         d    d   d      d    d     d        d      d        o       o
use_only      d    o   o      o    o     o        o      o        d       d
no_grant      d    d   d      d    d     d        d      d        d       d
other_room    d    d   d      d    d     d        d      d        d       d
operator      d    d   d      d    d     d        d      d        d       d
expired       u    u   u      u    u     u        u      u        u       u
"""
LETTER = {"o": Outcome.OK, "d": Outcome.DENIED, "i": Outcome.INVALID, "u": Outcome.UNAUTHENTICATED}
EXPECTED = {
    (row.split()[0], action): LETTER[cell]
    for row in _TABLE.strip().splitlines()
    for action, cell in zip(Action, row.split()[1:])
}


def address_for(name: str, action: Action) -> Address:
    if action is Action.REQUEST:
        # a request by this principal for itself, delegated to frank
        identity = PRINCIPALS[name].identity
        return Address("room1", identity, "req", "frank", asked_identity="erin", asked_participant="p-erin")
    return TARGET


@pytest.mark.parametrize(("name", "action"), sorted(EXPECTED, key=str), ids=lambda v: getattr(v, "value", v))
def test_every_principal_and_action(name: str, action: Action) -> None:
    decision = decide(PRINCIPALS[name], action, address_for(name, action), now=NOW, participant=f"p-{PRINCIPALS[name].identity}")
    assert decision.outcome is EXPECTED[(name, action)], decision
    if not decision.allowed:
        assert decision.reason  # every refusal says why


def test_the_table_covers_every_action() -> None:
    assert {a for _, a in EXPECTED} == set(Action)


def test_a_secret_cannot_be_delegated_to_its_own_owner() -> None:
    own = Address("room1", "alice", "github", "alice")
    assert decide(who("alice"), Action.DELEGATE, own, now=NOW).outcome is Outcome.INVALID
    # but reading with delegated_to = oneself is how a delegate asks for what it was given
    assert decide(who("alice"), Action.READ, own, now=NOW).allowed


def test_a_request_never_stores_into_a_third_identity() -> None:
    # an OAuth consent: the credential belongs to the identity asked
    consent = Address("room1", "erin", "oidc", "bob", asked_identity="erin")
    assert decide(who("carol"), Action.REQUEST, consent, now=NOW).allowed
    planted = Address("room1", "victim", "oidc", None, asked_identity="erin")
    decision = decide(who("carol"), Action.REQUEST, planted, now=NOW)
    assert decision.outcome is Outcome.DENIED and "third identity" in decision.reason


def test_an_oauth_consent_covers_its_requesters_like_a_delegation() -> None:
    credential = Address("room1", "erin", "oidc", None, covers=frozenset({"carol"}))
    assert decide(who("carol"), Action.READ, credential, now=NOW).allowed
    assert not decide(who("carol"), Action.DELETE, credential, now=NOW).allowed
    assert not decide(who("frank"), Action.READ, credential, now=NOW).allowed


def test_expiry_honours_the_leeway() -> None:
    late = who("alice", expires_at=NOW - 30)
    assert decide(late, Action.READ, TARGET, now=NOW, leeway=60).allowed
    assert decide(late, Action.READ, TARGET, now=NOW, leeway=10).outcome is Outcome.UNAUTHENTICATED


def test_docs_vault_md_shows_the_policy_table() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "vault.md").read_text()
    found = re.search(r"<!-- policy-table -->\n(.*?)<!-- /policy-table -->", doc, re.S)
    assert found, "docs/vault.md lost its <!-- policy-table --> markers"
    assert found.group(1) == table(), "docs/vault.md's table differs from roomsvc.domain.policy: paste policy.table()"
