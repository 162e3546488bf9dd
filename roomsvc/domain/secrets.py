"""Room secrets: identity-scoped, versioned, encrypted, audited.

Rules (checked here, on every call, whatever the transport):

* every operation needs a token for the room with the ``secrets`` API section;
* a secret belongs to ``owner`` (the caller's identity, or ``for_identity``, which needs
  the ``admin`` section too) and is addressed by ``(room, owner, id, delegated_to)``;
* a secret delegated to D can be read, checked and used by its owner and by D; only
  the owner or an admin can list, change or delete it;
* another identity's secret looks exactly like a missing one.

Values are :class:`~roomsvc.ids.SecretBytes` and are encrypted through the
:class:`~roomsvc.domain.ports.Cipher` port with associated data naming the place.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from typing import Protocol

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.ports import Cipher, EncryptedBlob, SecretRecord, SecretRepository
from roomsvc.domain.principal import Principal
from roomsvc.errors import (
    Conflict,
    DecryptionFailed,
    InvalidRequest,
    InvalidState,
    NotFound,
    PermissionDenied,
    RoomsvcError,
    TooLarge,
)
from roomsvc.ids import Identity, RoomName, SecretBytes, SecretId, parse_identity, parse_room, parse_secret_id

DEFAULT_TYPE = "application/octet-stream"
MAX_LABEL = 256
KIND_PLAIN = "plain"
KIND_OAUTH = "oauth"


def secret_aad(record: SecretRecord) -> bytes:
    """Associated data binding a ciphertext to its place; a moved row will not decrypt."""
    return json.dumps(
        ["roomsvc/room-secret/v1", record.kind, record.room, record.owner, record.id, record.delegated_to or "", record.version],
        separators=(",", ":"),
    ).encode()


class OAuthHooks(Protocol):
    """What the OAuth service does for credentials (kind ``oauth``) read or deleted here."""

    async def oauth_value(self, record: SecretRecord, value: SecretBytes) -> SecretBytes:
        """The value a reader gets: the current access token only, never the refresh token."""

    async def oauth_deleted(self, record: SecretRecord, value: SecretBytes) -> None:
        """Revoke the deleted credential's grant at the provider (RFC 7009), best effort."""


@dataclass(frozen=True)
class Address:
    room: RoomName
    owner: Identity
    id: SecretId
    delegated_to: Identity | None


class SecretService:
    def __init__(
        self,
        *,
        store: SecretRepository,
        cipher: Cipher,
        auditor: Auditor,
        clock: Clock,
        max_value_size: int = 65536,
        max_versions: int = 10,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._audit = auditor
        self._clock = clock
        self.max_value_size = max_value_size
        self._max_versions = max_versions
        self._oauth: OAuthHooks | None = None

    def attach_oauth(self, hooks: OAuthHooks) -> None:
        """Wired by the composition root once the OAuth service exists."""
        self._oauth = hooks

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
        addr = await self._writable(caller, room, secret_id, delegated_to, for_identity, "set", channel)
        if addr.delegated_to == addr.owner:
            # a secret "delegated" to its own owner would shadow what others delegated to it
            await self._audit.record(caller, addr, "set", channel, "refused", "delegated to its owner")
            raise InvalidRequest("delegated_to must name another identity than the secret's owner")
        if not isinstance(value, (bytes, bytearray)):
            raise InvalidRequest("secret value must be bytes")
        if len(value) > self.max_value_size:
            await self._audit.record(caller, addr, "set", channel, "refused", "too large")
            raise TooLarge(
                f"secret value is {len(value)} bytes; the limit is {self.max_value_size} (secrets.max_value_size)"
            )
        type_ = _label(type, "type") or DEFAULT_TYPE
        name_ = _label(name, "name") or addr.id
        for attempt in range(3):
            current = await self._store.get_secret(addr.room, addr.owner, addr.id, addr.delegated_to)
            previous = current[0].version if current else 0
            if current and current[0].kind == KIND_OAUTH and kind != KIND_OAUTH:
                await self._audit.record(caller, addr, "set", channel, "denied", "oauth credential")
                raise PermissionDenied(f"secret {addr.id!r} is an OAuth credential; it cannot be overwritten with set")
            if expected_version is not None and expected_version != previous:
                await self._audit.record(caller, addr, "set", channel, "conflict")
                raise Conflict(f"secret {addr.id!r} is at version {previous}, not {expected_version}")
            now = self._clock.now()
            record = SecretRecord(
                room=addr.room, owner=addr.owner, id=addr.id, delegated_to=addr.delegated_to,
                type=type_, name=name_, kind=kind, version=previous + 1,
                created_at=current[0].created_at if current else now, updated_at=now,
            )
            blob = self._cipher.encrypt(bytes(value), secret_aad(record))
            try:
                return await self._store.put_secret(
                    record, blob, previous_version=previous, max_versions=self._max_versions,
                    audit=self._audit.line(caller, addr, "create" if previous == 0 else "update", channel, "ok"),
                )
            except Conflict:
                # another write landed between our read and our commit
                if expected_version is not None or attempt == 2:
                    await self._audit.record(caller, addr, "set", channel, "conflict")
                    raise
        raise AssertionError("unreachable")

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
        # -- use-only grant (issue 10 §6): such a token resolves headers, never reads a value --
        if action == "read" and caller.use_only:
            place = Address(RoomName(str(room)), Identity(str(for_identity or caller.identity)), SecretId(str(secret_id)), None)
            await self._audit.record(caller, place, action, channel, "denied", "use-only token")
            raise PermissionDenied("this token may only use secrets in headers (use_only); it cannot read values")
        record, blob = await self._readable(caller, room, secret_id, delegated_to, for_identity, action, channel)
        try:
            value = self._cipher.decrypt(blob, secret_aad(record))
        except DecryptionFailed:
            await self._audit.record(caller, _addr(record), action, channel, "decrypt_failed")
            raise
        if record.kind == KIND_OAUTH:
            # an OAuth credential reads as its current access token (refreshed when due)
            if self._oauth is None:
                raise InvalidState("OAuth credentials can only be read when the OAuth service is running")
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
        try:
            record, _ = await self._readable(caller, room, secret_id, delegated_to, for_identity, "exists", channel)
        except NotFound:
            return False
        await self._audit.record(caller, _addr(record), "exists", channel, "ok")
        return True

    async def list(self, caller: Principal, room: str, *, for_identity: str | None = None, channel: str) -> list[SecretRecord]:
        """Metadata of the owner's secrets: never values."""
        room_ = await self._check_room(caller, room, None, "list", channel)
        owner = await self._owner(caller, room_, for_identity, None, "list", channel)
        records = await self._store.list_secrets(room_, owner)
        await self._audit.record(caller, Address(room_, owner, SecretId("*"), None), "list", channel, "ok")
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
        addr = await self._writable(caller, room, secret_id, delegated_to, for_identity, "delete", channel)
        current = await self._store.get_secret(addr.room, addr.owner, addr.id, addr.delegated_to)
        if current is None:
            await self._audit.record(caller, addr, "delete", channel, "not_found")
            raise NotFound(f"secret {addr.id!r} not found")
        deleted = await self._store.delete_secret(
            addr.room, addr.owner, addr.id, addr.delegated_to, audit=self._audit.line(caller, addr, "delete", channel, "ok")
        )
        if not deleted:
            raise NotFound(f"secret {addr.id!r} not found")
        if current[0].kind == KIND_OAUTH and self._oauth is not None:
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
        addr = await self._writable(caller, room, secret_id, delegated_to, for_identity, "versions", channel)
        found = await self._store.list_versions(addr.room, addr.owner, addr.id, addr.delegated_to)
        if not found:
            await self._audit.record(caller, addr, "versions", channel, "not_found")
            raise NotFound(f"secret {addr.id!r} not found")
        await self._audit.record(caller, addr, "versions", channel, "ok")
        return found

    # -- authorization -------------------------------------------------------------------

    async def _check_room(self, caller: Principal, room: str, secret_id: str | None, action: str, channel: str) -> RoomName:
        room_ = parse_room(room)
        try:
            caller.require_room(room_)
            caller.require_api("secrets")
        except PermissionDenied as exc:
            await self._audit.record(
                caller, Address(room_, caller.identity, SecretId(secret_id or "*"), None), action, channel, "denied", exc.message
            )
            raise
        return room_

    async def _owner(
        self, caller: Principal, room: RoomName, for_identity: str | None, secret_id: str | None, action: str, channel: str
    ) -> Identity:
        if for_identity is None or for_identity == "" or for_identity == caller.identity:
            return caller.identity
        owner = parse_identity(for_identity)
        if not caller.is_admin:
            await self._audit.record(
                caller, Address(room, owner, SecretId(secret_id or "*"), None), action, channel, "denied", "for_identity without admin"
            )
            raise PermissionDenied("acting for another identity (for_identity) needs the admin API grant")
        return owner

    async def _writable(
        self, caller: Principal, room: str, secret_id: str, delegated_to: str | None, for_identity: str | None,
        action: str, channel: str,
    ) -> Address:
        room_ = await self._check_room(caller, room, secret_id if isinstance(secret_id, str) else None, action, channel)
        id_ = parse_secret_id(secret_id)
        owner = await self._owner(caller, room_, for_identity, id_, action, channel)
        delegate = parse_identity(delegated_to) if delegated_to else None
        return Address(room_, owner, id_, delegate)

    async def _readable(
        self, caller: Principal, room: str, secret_id: str, delegated_to: str | None, for_identity: str | None,
        action: str, channel: str,
    ) -> tuple[SecretRecord, EncryptedBlob]:
        room_ = await self._check_room(caller, room, secret_id if isinstance(secret_id, str) else None, action, channel)
        id_ = parse_secret_id(secret_id)
        delegate = parse_identity(delegated_to) if delegated_to else None
        found: tuple[SecretRecord, EncryptedBlob] | None = None
        owner = caller.identity
        if for_identity and for_identity != caller.identity:
            owner = parse_identity(for_identity)
            if delegate != caller.identity:
                # anyone but the delegate itself needs the admin grant to name an owner
                owner = await self._owner(caller, room_, for_identity, id_, action, channel)
            found = await self._store.get_secret(room_, owner, id_, delegate)
        else:
            found = await self._store.get_secret(room_, caller.identity, id_, delegate)
            if found is None and delegate == caller.identity:
                # a delegate that does not name the owner: find who delegated this id to it
                candidates = await self._store.find_delegated(room_, id_, caller.identity)
                if len(candidates) > 1:
                    await self._audit.record(caller, Address(room_, caller.identity, id_, delegate), action, channel, "ambiguous")
                    raise InvalidRequest(
                        f"several identities delegated {id_!r} to you; name the owner with for_identity"
                    )
                if candidates:
                    found = await self._store.get_secret(room_, candidates[0].owner, id_, delegate)
        if found is None:
            # the same answer whether it is missing or someone else's
            await self._audit.record(caller, Address(room_, owner, id_, delegate), action, channel, "not_found")
            raise NotFound(f"secret {id_!r} not found")
        return found


def _addr(record: SecretRecord) -> Address:
    return Address(record.room, record.owner, record.id, record.delegated_to)


def _label(value: object, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_LABEL or not value.isprintable():
        raise InvalidRequest(f"secret {what} must be printable text of at most {MAX_LABEL} characters")
    return value


