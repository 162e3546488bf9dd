"""Room secrets: identity-scoped, versioned, encrypted, audited.

A secret belongs to ``owner`` (the caller's identity, or ``for_identity``) and is
addressed by ``(room, owner, id, delegated_to)``. Who may do what is decided by
:func:`roomsvc.domain.policy.decide` on every call, whatever the transport; this service
parses the request into an address, asks, audits the answer and acts.

Values are :class:`~roomsvc.ids.SecretBytes` and are encrypted through the
:class:`~roomsvc.domain.ports.Cipher` port with associated data naming the place, and
written through :class:`~roomsvc.domain.secret_writes.SecretWriter` (shared with the
OAuth credential vault, which is why this service can be built after the OAuth hooks
it takes).
"""

from __future__ import annotations

import builtins
from typing import Protocol

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.policy import Action, Decision, Outcome, decide
from roomsvc.domain.policy import Address as PolicyAddress
from roomsvc.domain.ports import Cipher, EncryptedBlob, SecretRecord, SecretRepository
from roomsvc.domain.principal import Principal
from roomsvc.domain.ratelimit import SECRET_OPS, RateLimiter
from roomsvc.domain.secret_writes import KIND_OAUTH, KIND_PLAIN, Address, SecretWriter, secret_aad
from roomsvc.errors import (
    DecryptionFailed,
    InvalidRequest,
    InvalidState,
    NotFound,
    PermissionDenied,
    RoomsvcError,
    Unauthenticated,
)
from roomsvc.ids import SecretBytes, SecretId, parse_identity, parse_room, parse_secret_id

__all__ = ["Address", "DEFAULT_TYPE", "KIND_OAUTH", "KIND_PLAIN", "OAuthHooks", "OAuthToken", "SecretService", "secret_aad"]

DEFAULT_TYPE = "application/octet-stream"
MAX_LABEL = 256


class OAuthToken(SecretBytes):
    """An OAuth credential's current access token, with what header injection must know
    about it (its expiry and allowed hosts), taken from the credential the read has just
    decrypted: the header code then needs no second read and decryption (issue 12)."""

    __slots__ = ("expires_at", "allowed_hosts")

    def __init__(self, token: bytes, *, expires_at: float | None, allowed_hosts: tuple[str, ...] | None) -> None:
        super().__init__(token)
        self.expires_at = expires_at
        self.allowed_hosts = allowed_hosts


class OAuthHooks(Protocol):
    """What the OAuth credentials do when one (kind ``oauth``) is read or deleted here;
    filled by :class:`roomsvc.domain.oauth.tokens.OAuthCredentials`, built before this
    service (see :mod:`roomsvc.domain.secret_writes` for the order)."""

    async def oauth_value(self, record: SecretRecord, value: SecretBytes) -> OAuthToken:
        """The value a reader gets: the current access token only, never the refresh token."""

    async def oauth_deleted(self, record: SecretRecord, value: SecretBytes) -> None:
        """Revoke the deleted credential's grant at the provider (RFC 7009), best effort."""


class NoOAuth:
    """The hooks of a vault without OAuth (unit tests): nothing to revoke, nothing to read."""

    async def oauth_value(self, record: SecretRecord, value: SecretBytes) -> OAuthToken:
        raise InvalidState("OAuth credentials can only be read when the OAuth service is running")

    async def oauth_deleted(self, record: SecretRecord, value: SecretBytes) -> None:
        return None


class SecretService:
    """Callers' secret operations. Each call is charged to the caller's ``secret_ops``
    rate limit; services acting for a caller already charged use :meth:`uncharged`."""

    def __init__(
        self,
        *,
        store: SecretRepository,
        writer: SecretWriter,
        cipher: Cipher,
        auditor: Auditor,
        clock: Clock,
        oauth: OAuthHooks | None = None,
        leeway: float = 0.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._limiter = limiter or RateLimiter.off()
        self._store = store
        self._writer = writer
        self._leeway = leeway
        self._cipher = cipher
        self._audit = auditor
        self._clock = clock
        self._oauth: OAuthHooks = oauth or NoOAuth()

    @property
    def max_value_size(self) -> int:
        return self._writer.max_value_size

    def uncharged(self) -> SecretService:
        """The same service without the rate limit, for services that act for a caller who
        has already been charged (header resolution, OAuth credential checks, storing a
        provided secret): one call is counted once, and the server's own writes never fail
        for someone else's budget. Everything else (policy, audit, storage) is shared."""
        return SecretService(
            store=self._store, writer=self._writer, cipher=self._cipher, auditor=self._audit, clock=self._clock,
            oauth=self._oauth, leeway=self._leeway,
        )

    # -- public operations ---------------------------------------------------------------

    async def set(
        self,
        caller: Principal,
        room: str,
        *,
        secret_id: str,
        value: bytes,
        type: str | None = None,
        name: str | None = None,
        delegated_to: str | None = None,
        for_identity: str | None = None,
        expected_version: int | None = None,
        channel: str,
        kind: str = KIND_PLAIN,
    ) -> SecretRecord:
        """Create or replace a secret (a new version each time).

        Raises:
            PermissionDenied, InvalidRequest, TooLarge, Conflict (expected_version differs).
        """
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        action = Action.DELEGATE if delegated_to else Action.WRITE
        addr = await self._address(caller, room, secret_id, delegated_to, for_identity, action, channel)
        if not isinstance(value, (bytes, bytearray)):
            raise InvalidRequest("secret value must be bytes")
        await self._writer.check_size(caller, addr, value, channel)
        type_ = _label(type, "type") or DEFAULT_TYPE
        name_ = _label(name, "name") or addr.id
        return await self._writer.write(
            caller, addr, value, type=type_, name=name_, kind=kind, expected_version=expected_version, channel=channel
        )

    async def get(
        self,
        caller: Principal,
        room: str,
        *,
        secret_id: str,
        delegated_to: str | None = None,
        for_identity: str | None = None,
        channel: str,
        action: str = "read",
    ) -> tuple[SecretRecord, SecretBytes]:
        """The current value. ``action`` is ``read`` or ``use`` (header injection) for the audit.

        Raises:
            NotFound: missing, or not visible to the caller.
            DecryptionFailed: the stored ciphertext does not open (audited).
            PermissionDenied: reading a value with a use-only token (audited).
        """
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        verb = Action.USE if action == "use" else Action.READ
        record, blob = await self._readable(caller, room, secret_id, delegated_to, for_identity, verb, channel)
        try:
            value = self._cipher.decrypt(blob, secret_aad(record))
        except DecryptionFailed:
            await self._audit.record(caller, _addr(record), action, channel, "decrypt_failed")
            raise
        if record.kind == KIND_OAUTH:
            # an OAuth credential reads as its current access token (refreshed when due)
            try:
                token = await self._oauth.oauth_value(record, SecretBytes(value))
            except RoomsvcError as exc:
                await self._audit.record(caller, _addr(record), action, channel, exc.name)
                raise
            await self._audit.record(caller, _addr(record), action, channel, "ok", "oauth access token")
            return record, token
        await self._audit.record(caller, _addr(record), action, channel, "ok")
        return record, SecretBytes(value)

    async def exists(
        self,
        caller: Principal,
        room: str,
        *,
        secret_id: str,
        delegated_to: str | None = None,
        for_identity: str | None = None,
        channel: str,
    ) -> bool:
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        try:
            record, _ = await self._readable(caller, room, secret_id, delegated_to, for_identity, Action.EXISTS, channel)
        except NotFound:
            return False
        await self._audit.record(caller, _addr(record), "exists", channel, "ok")
        return True

    async def list(self, caller: Principal, room: str, *, for_identity: str | None = None, channel: str) -> list[SecretRecord]:
        """Metadata of the owner's secrets: never values."""
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        addr = await self._address(caller, room, None, None, for_identity, Action.LIST, channel)
        records = await self._store.list_secrets(addr.room, addr.owner)
        await self._audit.record(caller, addr, "list", channel, "ok")
        return records

    async def delete(
        self,
        caller: Principal,
        room: str,
        *,
        secret_id: str,
        delegated_to: str | None = None,
        for_identity: str | None = None,
        channel: str,
    ) -> SecretRecord:
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        addr = await self._address(caller, room, secret_id, delegated_to, for_identity, Action.DELETE, channel)
        current = await self._store.get_secret(addr.room, addr.owner, addr.id, addr.delegated_to)
        if current is None:
            await self._audit.record(caller, addr, "delete", channel, "not_found")
            raise NotFound(f"secret {addr.id!r} not found")
        deleted = await self._store.delete_secret(
            addr.room, addr.owner, addr.id, addr.delegated_to, audit=self._audit.line(caller, addr, "delete", channel, "ok")
        )
        if not deleted:
            raise NotFound(f"secret {addr.id!r} not found")
        if current[0].kind == KIND_OAUTH:
            # the row is gone first; revoking the grant upstream is best effort
            try:
                value = SecretBytes(self._cipher.decrypt(current[1], secret_aad(current[0])))
            except DecryptionFailed:
                return current[0]
            await self._oauth.oauth_deleted(current[0], value)
        return current[0]

    async def versions(
        self,
        caller: Principal,
        room: str,
        *,
        secret_id: str,
        delegated_to: str | None = None,
        for_identity: str | None = None,
        channel: str,
    ) -> builtins.list[tuple[int, float]]:  # ``list`` in this class body is the method above
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        addr = await self._address(caller, room, secret_id, delegated_to, for_identity, Action.VERSIONS, channel)
        found = await self._store.list_versions(addr.room, addr.owner, addr.id, addr.delegated_to)
        if not found:
            await self._audit.record(caller, addr, "versions", channel, "not_found")
            raise NotFound(f"secret {addr.id!r} not found")
        await self._audit.record(caller, addr, "versions", channel, "ok")
        return found

    # -- authorization: every decision is roomsvc.domain.policy's ---------------------------

    def decide(self, caller: Principal, action: Action, address: PolicyAddress, *, participant: str | None = None) -> Decision:
        """The policy's answer now (no audit): for callers that audit in their own words."""
        return decide(caller, action, address, now=self._clock.now(), leeway=self._leeway, participant=participant)

    async def check(
        self, caller: Principal, action: Action, addr: Address, channel: str, *, covers: frozenset[str] = frozenset(),
        asked: str | None = None,
    ) -> None:
        """Ask the policy; audit and raise its refusal.

        Raises:
            PermissionDenied, InvalidRequest, Unauthenticated.
        """
        decision = self.decide(
            caller, action, PolicyAddress(addr.room, addr.owner, addr.id, addr.delegated_to, covers=covers, asked_identity=asked)
        )
        if decision.allowed:
            return
        audit_action = _AUDIT_ACTION.get(action, action.value)
        if decision.outcome is Outcome.INVALID:
            await self._audit.record(caller, addr, audit_action, channel, "refused", decision.reason)
            raise InvalidRequest(decision.reason)
        if decision.outcome is Outcome.UNAUTHENTICATED:
            await self._audit.record(caller, addr, audit_action, channel, "unauthenticated", decision.reason)
            raise Unauthenticated(decision.reason)
        await self._audit.record(caller, addr, audit_action, channel, "denied", decision.reason)
        raise PermissionDenied(decision.reason)

    async def _address(
        self, caller: Principal, room: str, secret_id: str | None, delegated_to: str | None, for_identity: str | None,
        action: Action, channel: str,
    ) -> Address:
        """Parse the addressing fields of a request into an address the caller may act on."""
        room_ = parse_room(room)
        if caller.room != room_ or not caller.has_api("secrets"):
            # refuse before parsing anything else: the refusal must not depend on the fields
            await self.check(caller, action, Address(room_, caller.identity, SecretId("*"), None), channel)
        id_ = parse_secret_id(secret_id) if secret_id is not None else SecretId("*")
        owner = parse_identity(for_identity) if for_identity else caller.identity
        delegate = parse_identity(delegated_to) if delegated_to else None
        addr = Address(room_, owner, id_, delegate)
        await self.check(caller, action, addr, channel)
        return addr

    async def _readable(
        self, caller: Principal, room: str, secret_id: str, delegated_to: str | None, for_identity: str | None,
        action: Action, channel: str,
    ) -> tuple[SecretRecord, EncryptedBlob]:
        """Find what a read names. Without ``for_identity`` it is the caller's own secret,
        except when the caller names itself as ``delegated_to``: then the one secret some
        owner delegated to it under that id (naming the owner is needed when several did).
        Own secrets are never shadowed by what others delegated."""
        if for_identity and for_identity != caller.identity:
            addr = await self._address(caller, room, secret_id, delegated_to, for_identity, action, channel)
        else:
            addr = await self._address(caller, room, secret_id, delegated_to, None, action, channel)
            if addr.delegated_to == caller.identity:
                candidates = await self._store.find_delegated(addr.room, addr.id, caller.identity)
                if len(candidates) > 1:
                    await self._audit.record(caller, addr, _AUDIT_ACTION[action], channel, "ambiguous")
                    raise InvalidRequest(f"several identities delegated {addr.id!r} to you; name the owner with for_identity")
                if candidates:
                    addr = Address(addr.room, candidates[0].owner, addr.id, addr.delegated_to)
                    await self.check(caller, action, addr, channel)
        found = await self._store.get_secret(addr.room, addr.owner, addr.id, addr.delegated_to)
        if found is None:
            # the same answer whether it is missing or someone else's
            await self._audit.record(caller, addr, _AUDIT_ACTION[action], channel, "not_found")
            raise NotFound(f"secret {addr.id!r} not found")
        return found


_AUDIT_ACTION = {
    Action.READ: "read", Action.USE: "use", Action.EXISTS: "exists", Action.LIST: "list", Action.WRITE: "set",
    Action.DELEGATE: "set", Action.DELETE: "delete", Action.VERSIONS: "versions", Action.REQUEST: "request",
    Action.ANSWER: "answer",
}


def _addr(record: SecretRecord) -> Address:
    return Address(record.room, record.owner, record.id, record.delegated_to)


def _label(value: object, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_LABEL or not value.isprintable():
        raise InvalidRequest(f"secret {what} must be printable text of at most {MAX_LABEL} characters")
    return value


