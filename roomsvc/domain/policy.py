"""Who may do what with a credential: every decision of the vault, as pure functions.

One question is asked everywhere: may *this principal* perform *this action* on *this
address*? SecretService, the OAuth service, secret requests and header resolution all
ask :func:`decide` and act on its answer; none of them holds a rule of its own. No I/O
here, so the whole table is testable without a server (tests/domain/test_policy.py) and
docs/vault.md's table is rendered from it (:func:`table`).

The principal is the verified token. The address names a room secret:
``(room, owner, id, delegated_to)``. How the caller relates to the address decides:

* **self**: the caller is the owner;
* **delegate**: the owner stored it ``delegated_to`` the caller (or, for an OAuth
  credential, the owner's consent covers the caller);
* **admin**: the caller names another owner and holds the ``admin`` API section;
* **other**: anyone else.

Answers are ``ok``, ``denied`` (permission_denied, audited), ``invalid`` (the request
itself is wrong) and ``unauthenticated`` (the token is no longer valid). Another
identity's secret is never reachable without naming its owner, and naming an owner
without a right to it is ``denied`` whether or not the secret exists; inside the
caller's own namespace a missing secret is simply not found.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from roomsvc.domain.principal import Principal
from roomsvc.ids import Identity, RoomName


class Action(enum.Enum):
    #: the value leaves roomsvc to the caller (get, a requested secret, an OAuth token)
    READ = "read"
    #: the value goes into a header that roomsvc renders for the caller (header resolution)
    USE = "use"
    EXISTS = "exists"
    LIST = "list"
    #: create or replace (set)
    WRITE = "write"
    #: write with ``delegated_to`` naming another identity
    DELEGATE = "delegate"
    DELETE = "delete"
    VERSIONS = "versions"
    #: ask another participant for a secret or an OAuth consent whose result is stored at the address
    REQUEST = "request"
    #: provide or reject a request addressed to the caller's participant
    ANSWER = "answer"


class Outcome(enum.Enum):
    OK = "ok"
    DENIED = "denied"
    INVALID = "invalid"
    UNAUTHENTICATED = "unauthenticated"


@dataclass(frozen=True)
class Address:
    """Where a room secret lives (or would live). ``id`` ``*`` stands for "every id" (list)."""

    room: str
    owner: str
    id: str = "*"
    delegated_to: str | None = None
    #: OAuth credentials only: identities the owner's consent was given for
    covers: frozenset[str] = frozenset()
    #: requests only: the identity asked (who consents or provides)
    asked_identity: str | None = None
    #: requests only: the participant the request is addressed to
    asked_participant: str | None = None


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.OK


OK = Decision(Outcome.OK)

#: actions a delegate may take on what was delegated to it
_DELEGATE_MAY = frozenset({Action.READ, Action.USE, Action.EXISTS})
#: actions whose result hands a value to the caller: refused to use-only tokens
_GIVES_VALUE = frozenset({Action.READ, Action.REQUEST})


def relation(who: Principal, address: Address) -> str:
    """``self``, ``delegate``, ``admin`` or ``other`` (see the module docstring)."""
    if address.owner == who.identity:
        return "self"
    if address.delegated_to == who.identity or who.identity in address.covers:
        return "delegate"
    if who.is_admin:
        return "admin"
    return "other"


def decide(
    who: Principal,
    action: Action,
    address: Address,
    *,
    now: float,
    leeway: float = 0.0,
    participant: str | None = None,
) -> Decision:
    """The one answer to "may ``who`` do ``action`` at ``address``?".

    ``participant`` is the caller's participant id, for :attr:`Action.ANSWER`.
    """
    if who.expires_at is not None and now >= who.expires_at + leeway:
        return Decision(Outcome.UNAUTHENTICATED, "token expired")
    if who.room is None:
        return Decision(Outcome.DENIED, "this token has no room grant")
    if who.room != address.room:
        return Decision(Outcome.DENIED, f"this token is for another room, not {address.room!r}")
    if action is Action.ANSWER:
        # the participant asked gives its own value or consent: no grant needed beyond the room
        if participant is None or participant != address.asked_participant:
            return Decision(Outcome.DENIED, "this request was addressed to another participant")
        return OK
    if not who.has_api("secrets"):
        return Decision(Outcome.DENIED, "the token's api grant has no 'secrets' section")
    if action in _GIVES_VALUE and who.use_only:
        return Decision(Outcome.DENIED, "this token may use secrets in headers but never read their values (use_only)")
    if action is Action.REQUEST:
        return _request(who, address)
    if action in (Action.WRITE, Action.DELEGATE) and address.delegated_to is not None:
        if address.delegated_to == address.owner:
            return Decision(Outcome.INVALID, "delegated_to must name another identity than the secret's owner")
    rel = relation(who, address)
    if rel == "self":
        return OK
    if rel == "delegate":
        if action in _DELEGATE_MAY:
            return OK
        return Decision(Outcome.DENIED, "a delegate may use a secret delegated to it, not list, change or delete it")
    if rel == "admin":
        return OK
    return Decision(Outcome.DENIED, "acting for another identity (for_identity) needs the admin API grant")


def _request(who: Principal, address: Address) -> Decision:
    """A request's result is stored for the requester (secrets) or the consenting identity
    (OAuth), optionally delegated to a named identity; never in a third identity's namespace."""
    if address.owner not in (who.identity, address.asked_identity):
        return Decision(Outcome.DENIED, "a request stores its result for the requester or the person asked, not a third identity")
    if address.delegated_to is not None and address.delegated_to == address.owner:
        return Decision(Outcome.INVALID, "delegate_to must name another identity than the credential's owner")
    return OK


# -- the documented table --------------------------------------------------------------------------

#: the principals of the documented table: (label, identity, room, api sections, expired)
TABLE_PRINCIPALS: tuple[tuple[str, str, str | None, tuple[str, ...], bool], ...] = (
    ("owner", "alice", "room1", ("secrets",), False),
    ("delegate (delegated_to = caller)", "bob", "room1", ("secrets",), False),
    ("other identity in the room", "carol", "room1", ("secrets",), False),
    ("admin (`for_identity`)", "dave", "room1", ("secrets", "admin"), False),
    ("the participant asked by a request", "erin", "room1", ("secrets",), False),
    ("use-only token of the owner", "alice", "room1", ("secrets:use_only",), False),
    ("no `secrets` section", "alice", "room1", ("admin",), False),
    ("token for another room", "alice", "room2", ("secrets",), False),
    ("operator token (no room)", "ops", None, ("admin",), False),
    ("expired token of the owner", "alice", "room1", ("secrets",), True),
)

#: the address every cell of the table acts on: alice's secret in room1, delegated to bob;
#: requests ask erin's participant ``p-erin``; answers come from participant ``p-<identity>``
TABLE_ADDRESS = Address("room1", "alice", "github", "bob", asked_identity="erin", asked_participant="p-erin")

_WORDS = {
    Outcome.OK: "yes",
    Outcome.DENIED: "denied",
    Outcome.INVALID: "invalid",
    Outcome.UNAUTHENTICATED: "unauthenticated",
}


def table_principal(identity: str, room: str | None, api: tuple[str, ...], expired: bool) -> Principal:
    sections: dict[str, Any] = {}
    for section in api:
        name, _, flag = section.partition(":")
        sections[name] = {flag: True} if flag else {}
    return Principal(
        identity=Identity(identity), room=RoomName(room) if room else None, api=MappingProxyType(sections),
        expires_at=0.0 if expired else None,
    )


def table() -> str:
    """docs/vault.md's policy table, rendered from :func:`decide` (a test keeps them equal)."""
    actions = list(Action)
    lines = [
        "| caller | " + " | ".join(a.value for a in actions) + " |",
        "|---|" + "---|" * len(actions),
    ]
    for label, identity, room, api, expired in TABLE_PRINCIPALS:
        who = table_principal(identity, room, api, expired)
        cells = []
        for action in actions:
            address = TABLE_ADDRESS
            if action is Action.REQUEST:
                # a request by this caller, stored for itself and delegated to frank
                address = Address(TABLE_ADDRESS.room, identity, "req", "frank", asked_identity="erin")
            outcome = decide(who, action, address, now=1.0, participant=f"p-{identity}").outcome
            cells.append(_WORDS[outcome])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
