"""Envelope encryption with AES-256-GCM.

Each stored value gets a fresh 256-bit data key (DEK). The value is encrypted under the
DEK with associated data that names its place (kind, room, owner, id, delegated_to,
version), so a ciphertext copied to another row does not decrypt. The DEK is wrapped by
a key-encryption key (KEK) from the keyring; the KEK id is stored next to the
ciphertext, so keys can rotate: re-wrapping a DEK never touches the value.

KEKs are stored in the database wrapped by the master key, which is never stored there.
"""

from __future__ import annotations

import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from roomsvc.domain.ports import EncryptedBlob
from roomsvc.errors import DecryptionFailed, Sealed

NONCE = 12
KEY_BYTES = 32


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def new_key_id() -> str:
    return "k" + secrets.token_hex(6)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < NONCE + 16:
        raise InvalidTag()
    return AESGCM(key).decrypt(sealed[:NONCE], sealed[NONCE:], aad)


def _dek_aad(kek_id: str) -> bytes:
    return b"roomsvc/dek/v1|" + kek_id.encode()


def _kek_aad(kek_id: str) -> bytes:
    return b"roomsvc/kek/v1|" + kek_id.encode()


class MasterKey:
    """The root key: it only wraps and unwraps key-encryption keys."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("the master key must be 32 bytes")
        self._key = key

    def wrap(self, kek_id: str, kek: bytes) -> bytes:
        return _seal(self._key, kek, _kek_aad(kek_id))

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        try:
            return _open(self._key, wrapped, _kek_aad(kek_id))
        except InvalidTag:
            raise Sealed(
                f"the master key does not open stored key {kek_id!r}: wrong ROOMSVC_MASTER_KEY / keys.master_key_file"
            ) from None

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"


class EnvelopeCipher:
    """Implements :class:`roomsvc.domain.ports.Cipher` over an in-memory keyring."""

    def __init__(self) -> None:
        self._keks: dict[str, bytes] = {}
        self._active: str | None = None

    def __repr__(self) -> str:
        return f"EnvelopeCipher(keys={sorted(self._keks)}, active={self._active!r})"

    # -- keyring ------------------------------------------------------------------------

    def add_key(self, kek_id: str, kek: bytes, *, active: bool) -> None:
        if len(kek) != KEY_BYTES:
            raise ValueError("key-encryption keys are 32 bytes")
        self._keks[kek_id] = kek
        if active:
            self._active = kek_id

    def drop_key(self, kek_id: str) -> None:
        if kek_id == self._active:
            raise ValueError("cannot drop the active key")
        self._keks.pop(kek_id, None)

    def key_ids(self) -> list[str]:
        return sorted(self._keks)

    @property
    def active_key_id(self) -> str:
        if self._active is None:
            raise Sealed("no active encryption key: the vault is sealed")
        return self._active

    # -- values ----------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, aad: bytes) -> EncryptedBlob:
        kek_id = self.active_key_id
        dek = new_key()
        return EncryptedBlob(
            kek_id=kek_id,
            wrapped_dek=_seal(self._keks[kek_id], dek, _dek_aad(kek_id)),
            ciphertext=_seal(dek, plaintext, aad),
        )

    def decrypt(self, blob: EncryptedBlob, aad: bytes) -> bytes:
        kek = self._keks.get(blob.kek_id)
        if kek is None:
            raise DecryptionFailed("the stored secret cannot be decrypted")
        try:
            dek = _open(kek, blob.wrapped_dek, _dek_aad(blob.kek_id))
            return _open(dek, blob.ciphertext, aad)
        except InvalidTag:
            raise DecryptionFailed("the stored secret cannot be decrypted") from None

    def rewrap(self, blob: EncryptedBlob, aad: bytes = b"", *, to_key_id: str | None = None) -> EncryptedBlob:
        target = to_key_id or self.active_key_id
        kek = self._keks.get(blob.kek_id)
        if kek is None or target not in self._keks:
            raise DecryptionFailed("the stored data key cannot be re-wrapped")
        try:
            dek = _open(kek, blob.wrapped_dek, _dek_aad(blob.kek_id))
        except InvalidTag:
            raise DecryptionFailed("the stored data key cannot be re-wrapped") from None
        return EncryptedBlob(target, _seal(self._keks[target], dek, _dek_aad(target)), blob.ciphertext)
