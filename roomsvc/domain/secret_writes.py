"""The one write path of room secrets: encrypt, compare-and-swap the version, audit.

:class:`SecretWriter` is what :class:`~roomsvc.domain.secrets.SecretService` writes through
after the policy allowed the caller, and what the OAuth credential vault
(:class:`~roomsvc.domain.oauth.refresh.CredentialVault`) writes through for the server's
own refreshes and consents. It decides nothing about who may write: its callers have.

It exists so that the services can be built in dependency order. The vault needs to
write, and ``SecretService`` needs the OAuth hooks (reading a credential refreshes it,
deleting it revokes the grant), which need the vault. With both writing through this
narrower port, the order is: writer, vault and hooks, ``SecretService`` - no cycle, and
nothing joined after construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.ports import Cipher, SecretRecord, SecretRepository
from roomsvc.domain.principal import Principal
from roomsvc.errors import Conflict, PermissionDenied, TooLarge
from roomsvc.ids import Identity, RoomName, SecretId

KIND_PLAIN = "plain"
KIND_OAUTH = "oauth"


@dataclass(frozen=True)
class Address:
    """Where a room secret lives: ``(room, owner, id, delegated_to)``."""

    room: RoomName
    owner: Identity
    id: SecretId
    delegated_to: Identity | None


def secret_aad(record: SecretRecord) -> bytes:
    """Associated data binding a ciphertext to its place; a moved row will not decrypt."""
    return json.dumps(
        ["roomsvc/room-secret/v1", record.kind, record.room, record.owner, record.id, record.delegated_to or "", record.version],
        separators=(",", ":"),
    ).encode()


class SecretWriter:
    def __init__(
        self, *, store: SecretRepository, cipher: Cipher, auditor: Auditor, clock: Clock, max_value_size: int = 65536,
        max_versions: int = 10,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._audit = auditor
        self._clock = clock
        self.max_value_size = max_value_size
        self._max_versions = max_versions

    async def check_size(self, actor: Principal, addr: Address, value: bytes, channel: str) -> None:
        """Raises: TooLarge (audited)."""
        if len(value) > self.max_value_size:
            await self._audit.record(actor, addr, "set", channel, "refused", "too large")
            raise TooLarge(f"secret value is {len(value)} bytes; the limit is {self.max_value_size} (secrets.max_value_size)")

    async def write(
        self, actor: Principal, addr: Address, value: bytes, *, type: str, name: str, kind: str,
        expected_version: int | None, channel: str,
    ) -> SecretRecord:
        """Store a new version of the secret at ``addr``, audited in the same commit.

        Raises:
            TooLarge. PermissionDenied: a plain write over an OAuth credential.
            Conflict: the current version is not ``expected_version`` (None: any; a
            concurrent write is then retried twice).
        """
        await self.check_size(actor, addr, value, channel)
        for attempt in range(3):
            current = await self._store.get_secret(addr.room, addr.owner, addr.id, addr.delegated_to)
            previous = current[0].version if current else 0
            if current and current[0].kind == KIND_OAUTH and kind != KIND_OAUTH:
                await self._audit.record(actor, addr, "set", channel, "denied", "oauth credential")
                raise PermissionDenied(f"secret {addr.id!r} is an OAuth credential; it cannot be overwritten with set")
            if expected_version is not None and expected_version != previous:
                await self._audit.record(actor, addr, "set", channel, "conflict")
                raise Conflict(f"secret {addr.id!r} is at version {previous}, not {expected_version}")
            now = self._clock.now()
            record = SecretRecord(
                room=addr.room, owner=addr.owner, id=addr.id, delegated_to=addr.delegated_to,
                type=type, name=name, kind=kind, version=previous + 1,
                created_at=current[0].created_at if current else now, updated_at=now,
            )
            blob = self._cipher.encrypt(bytes(value), secret_aad(record))
            try:
                return await self._store.put_secret(
                    record, blob, previous_version=previous, max_versions=self._max_versions,
                    audit=self._audit.line(actor, addr, "create" if previous == 0 else "update", channel, "ok"),
                )
            except Conflict:
                # another write landed between our read and our commit
                if expected_version is not None or attempt == 2:
                    await self._audit.record(actor, addr, "set", channel, "conflict")
                    raise
        raise AssertionError("unreachable")
