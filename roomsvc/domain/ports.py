"""The interfaces the domain needs from the outside world (storage, crypto).

Implementations live in :mod:`roomsvc.storage` and :mod:`roomsvc.crypto`; the
composition root (:mod:`roomsvc.app`) wires them in. A PostgreSQL store fills the same
protocols without the domain changing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Protocol, Sequence

from roomsvc.ids import Identity, RoomName, SecretId


@dataclass(frozen=True)
class RoomRecord:
    name: RoomName
    created_at: float


@dataclass(frozen=True)
class EncryptedBlob:
    """An envelope-encrypted value: the data key wrapped by key ``kek_id``."""

    kek_id: str
    wrapped_dek: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"EncryptedBlob(kek_id={self.kek_id!r}, <{len(self.ciphertext)} bytes>)"


@dataclass(frozen=True)
class SecretRecord:
    """Metadata of a room secret: everything but the value."""

    room: RoomName
    owner: Identity
    id: SecretId
    delegated_to: Identity | None
    type: str
    name: str
    kind: str  # "plain" or "oauth"
    version: int
    created_at: float
    updated_at: float

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "owner": self.owner,
            "delegated_to": self.delegated_to,
            "kind": self.kind,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class ProjectSecretRecord:
    id: str
    name: str
    kind: str  # "keys" or "pull"
    version: int
    created_at: float
    updated_at: float

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.kind,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class AuditRecord:
    time: float
    room: str | None
    actor: str
    owner: str | None
    secret_id: str | None
    action: str
    channel: str
    outcome: str
    detail: str = ""


@dataclass(frozen=True)
class Revocation:
    """One revocation. For ``identity``, ``revoked_before`` is the time before which
    tokens were issued; ``room`` (None = every room) narrows it."""

    kind: str
    value: str
    room: str | None
    revoked_before: float
    actor: str
    created_at: float

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "value": self.value, "room": self.room,
                "revoked_before": self.revoked_before, "actor": self.actor, "created_at": self.created_at}


@dataclass(frozen=True)
class KeyRecord:
    """A key-encryption key, stored wrapped by the master key."""

    id: str
    wrapped: bytes
    created_at: float
    active: bool


@dataclass(frozen=True)
class RewrapItem:
    """One stored data key to re-wrap under a new key (the value itself is not touched)."""

    table: str
    row_id: int
    blob: EncryptedBlob


class RoomRepository(Protocol):
    async def get_room(self, name: RoomName) -> RoomRecord | None: ...
    async def create_room(self, name: RoomName, *, created_at: float) -> RoomRecord: ...
    async def ensure_room(self, name: RoomName, *, created_at: float) -> RoomRecord: ...
    async def list_rooms(self) -> list[RoomRecord]: ...


class SecretRepository(Protocol):
    async def get_secret(
        self, room: RoomName, owner: Identity, id: SecretId, delegated_to: Identity | None
    ) -> tuple[SecretRecord, EncryptedBlob] | None: ...

    async def find_delegated(self, room: RoomName, id: SecretId, delegate: Identity) -> list[SecretRecord]: ...

    async def put_secret(
        self,
        record: SecretRecord,
        blob: EncryptedBlob,
        *,
        previous_version: int,
        max_versions: int,
        audit: AuditRecord,
    ) -> SecretRecord:
        """Store ``record.version`` if the current version is still ``previous_version``
        (0 = absent), else raise Conflict. The audit line commits with the write."""

    async def list_secrets(self, room: RoomName, owner: Identity) -> list[SecretRecord]: ...

    async def delete_secret(
        self, room: RoomName, owner: Identity, id: SecretId, delegated_to: Identity | None, *, audit: AuditRecord
    ) -> bool: ...

    async def list_versions(
        self, room: RoomName, owner: Identity, id: SecretId, delegated_to: Identity | None
    ) -> list[tuple[int, float]]: ...

    # project-level secrets (keys bags and image pull secrets)
    async def put_project_secret(
        self, record: ProjectSecretRecord, blob: EncryptedBlob, *, audit: AuditRecord
    ) -> ProjectSecretRecord: ...

    async def get_project_secret(self, id: str) -> tuple[ProjectSecretRecord, EncryptedBlob] | None: ...
    async def list_project_secrets(self, kind: str | None = None) -> list[ProjectSecretRecord]: ...
    async def delete_project_secret(self, id: str, *, audit: AuditRecord) -> bool: ...


class AuditRepository(Protocol):
    async def append(self, records: Sequence[AuditRecord]) -> None:
        """Durably store audit lines; returns only once they are committed."""

    async def query(
        self, *, room: str | None = None, identity: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditRecord]: ...


class RevocationRepository(Protocol):
    async def add_revocation(self, revocation: Revocation, *, audit: AuditRecord) -> None:
        """Store a revocation; the audit line commits with it."""

    async def list_revocations(self) -> list[Revocation]: ...


class KeyRepository(Protocol):
    async def list_keys(self) -> list[KeyRecord]: ...
    async def add_key(self, key: KeyRecord) -> None: ...
    async def delete_key(self, key_id: str) -> None: ...
    async def count_key_uses(self, key_id: str) -> int: ...
    def blobs_using(self, key_id: str, *, batch: int) -> AsyncIterator[list[RewrapItem]]: ...
    async def replace_blobs(self, items: Sequence[tuple[RewrapItem, EncryptedBlob]]) -> int: ...


class Cipher(Protocol):
    """Envelope encryption bound to a place (the associated data)."""

    @property
    def active_key_id(self) -> str: ...

    def encrypt(self, plaintext: bytes, aad: bytes) -> EncryptedBlob: ...

    def decrypt(self, blob: EncryptedBlob, aad: bytes) -> bytes:
        """Raises DecryptionFailed when the blob was altered, moved or its key is gone."""

    def rewrap(self, blob: EncryptedBlob, aad: bytes, *, to_key_id: str | None = None) -> EncryptedBlob: ...


class Store(RoomRepository, SecretRepository, AuditRepository, KeyRepository, RevocationRepository, Protocol):
    """Everything one storage engine provides."""

    async def close(self) -> None: ...
    async def backup(self, name: str, *, directory: Path) -> str: ...
