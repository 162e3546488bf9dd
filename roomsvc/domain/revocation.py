"""Token revocation and the life of a session: a token stops working when it expires or
when an operator revokes it, on new requests and on sockets already open.

Two kinds of revocation:

* **by token id** (``jti``): that one token, whoever holds it;
* **by identity** (optionally in one room): every token of that identity issued before
  the revocation (its ``iat`` earlier than the revocation time). A token without ``iat``
  cannot show it is newer, so it is refused too. Tokens minted afterwards work. ``iat``
  is whole seconds: a token minted in the same second as the revocation is revoked too.

:func:`revocation_reason` is the pure rule; :class:`TokenService` keeps the list in
memory (loaded at start), stores each revocation with its audit line, and tells its
listeners (the transports, which close the sockets concerned at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.ports import Revocation, RevocationRepository
from roomsvc.domain.principal import Principal
from roomsvc.errors import InvalidRequest, PermissionDenied, Unauthenticated
from roomsvc.ids import parse_identity, parse_room

MAX_TOKEN_ID = 256


@dataclass(frozen=True)
class RevocationList:
    """The revocations in force, indexed for the check every request makes."""

    token_ids: frozenset[str] = frozenset()
    #: (identity, room or None) -> the latest ``revoked_before``
    identities: dict[tuple[str, str | None], float] = field(default_factory=dict)

    @classmethod
    def of(cls, revocations: Sequence[Revocation]) -> "RevocationList":
        ids: set[str] = set()
        identities: dict[tuple[str, str | None], float] = {}
        for r in revocations:
            if r.kind == "jti":
                ids.add(r.value)
            elif r.kind == "identity":
                key = (r.value, r.room)
                identities[key] = max(identities.get(key, r.revoked_before), r.revoked_before)
        return cls(frozenset(ids), identities)

    def adding(self, revocation: Revocation) -> "RevocationList":
        if revocation.kind == "jti":
            return RevocationList(self.token_ids | {revocation.value}, self.identities)
        key = (revocation.value, revocation.room)
        identities = dict(self.identities)
        identities[key] = max(identities.get(key, revocation.revoked_before), revocation.revoked_before)
        return RevocationList(self.token_ids, identities)


def revocation_reason(principal: Principal, revocations: RevocationList) -> str | None:
    """Why this principal's token is revoked, or None. Pure: no I/O, no clock."""
    if principal.token_id is not None and principal.token_id in revocations.token_ids:
        return "token revoked"
    scopes: list[tuple[str, str | None]] = [(principal.identity, None)]
    if principal.room is not None:
        scopes.append((principal.identity, principal.room))
    for key in scopes:
        before = revocations.identities.get(key)
        if before is None:
            continue
        if principal.issued_at is None:
            return "token revoked: tokens of this identity issued before the revocation are refused (this one has no 'iat')"
        if principal.issued_at < before:
            return "token revoked: tokens of this identity issued before the revocation are refused"
    return None


def expiry_reason(principal: Principal, now: float, leeway: float) -> str | None:
    """Why a session on this principal's token must end now (it expired), or None. Pure."""
    if principal.expires_at is not None and now > principal.expires_at + leeway:
        return "token expired"
    return None


Listener = Callable[[RevocationList], None]


class TokenService:
    """Whether a token still counts, now: revocations and expiry, for every transport."""

    def __init__(self, *, store: RevocationRepository, auditor: Auditor, clock: Clock, leeway: float) -> None:
        self._store = store
        self._auditor = auditor
        self._clock = clock
        self._leeway = leeway
        self._list = RevocationList()
        self._listeners: list[Listener] = []

    async def load(self) -> None:
        """Read the stored revocations (at start, before serving)."""
        self._list = RevocationList.of(await self._store.list_revocations())

    @property
    def revocations(self) -> RevocationList:
        return self._list

    def on_revoke(self, listener: Listener) -> None:
        """Call ``listener`` with the new list after every revocation (must not block)."""
        self._listeners.append(listener)

    # -- checks ---------------------------------------------------------------------------

    def check(self, principal: Principal) -> None:
        """Raises: Unauthenticated if the token is revoked or has expired."""
        reason = revocation_reason(principal, self._list) or expiry_reason(principal, self._clock.now(), self._leeway)
        if reason is not None:
            raise Unauthenticated(reason)

    def is_revoked(self, principal: Principal) -> bool:
        return revocation_reason(principal, self._list) is not None

    def seconds_left(self, principal: Principal) -> float | None:
        """Seconds until a session on this token must end (expiry plus leeway); None = never."""
        if principal.expires_at is None:
            return None
        return principal.expires_at + self._leeway - self._clock.now()

    # -- revoking ---------------------------------------------------------------------------

    async def revoke_token(self, caller: Principal, token_id: object) -> Revocation:
        """Revoke one token by its ``jti``.

        Raises:
            PermissionDenied: the caller is not an operator (audited).
            InvalidRequest: the id is not a non-empty string.
        """
        await self.authorize(caller)
        if not isinstance(token_id, str) or not token_id.strip() or len(token_id) > MAX_TOKEN_ID:
            raise InvalidRequest(f"'jti' must be a non-empty string of at most {MAX_TOKEN_ID} characters")
        now = self._clock.now()
        return await self._add(caller, Revocation("jti", token_id, None, now, caller.identity, now))

    async def revoke_identity(self, caller: Principal, identity: object, room: object = None) -> Revocation:
        """Revoke every token of ``identity`` (in ``room``, or all rooms) issued before now.

        Raises:
            PermissionDenied: the caller is not an operator (audited).
            InvalidRequest: a malformed identity or room.
        """
        await self.authorize(caller)
        name = parse_identity(identity)
        where = parse_room(room) if room is not None else None
        now = self._clock.now()
        return await self._add(caller, Revocation("identity", name, where, now, caller.identity, now))

    async def authorize(self, caller: Principal) -> None:
        """Raises: PermissionDenied (audited) unless the caller holds an operator token."""
        if not caller.is_operator:
            await self._auditor.record(caller, None, "token.revoke", "admin", "denied")
            raise PermissionDenied("revoking tokens needs an operator token (roomsvc token --operator)")

    async def _add(self, caller: Principal, revocation: Revocation) -> Revocation:
        # the audit line names the revoked identity as owner and its room, so
        # `roomsvc audit --identity NAME` shows it
        owner = revocation.value if revocation.kind == "identity" else None
        place = _Where(room=revocation.room, owner=owner, id=revocation.value)
        audit = self._auditor.line(caller, place, "token.revoke", "admin", "ok", revocation.kind)
        await self._store.add_revocation(revocation, audit=audit)
        self._list = self._list.adding(revocation)
        for listener in list(self._listeners):
            listener(self._list)
        return revocation


@dataclass(frozen=True)
class _Where:
    room: str | None
    owner: str | None
    id: str
