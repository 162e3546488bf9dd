"""Envelope encryption (roomsvc/crypto/envelope.py): binding, tamper detection, nonces,
re-wrapping, the master key. No I/O."""

from __future__ import annotations

import pytest

from roomsvc.crypto.envelope import NONCE, EnvelopeCipher, MasterKey, new_key
from roomsvc.domain.ports import EncryptedBlob, ProjectSecretRecord, SecretRecord
from roomsvc.domain.project_secrets import project_aad
from roomsvc.domain.secrets import secret_aad
from roomsvc.errors import DecryptionFailed, Sealed
from roomsvc.ids import Identity, RoomName, SecretId


def record(room: str = "r", owner: str = "o", id: str = "i", delegated_to: str | None = None, version: int = 1,
           kind: str = "plain") -> SecretRecord:
    return SecretRecord(
        room=RoomName(room), owner=Identity(owner), id=SecretId(id),
        delegated_to=Identity(delegated_to) if delegated_to else None,
        type="text/plain", name="n", kind=kind, version=version, created_at=0.0, updated_at=0.0,
    )


def cipher_with(*ids: str) -> EnvelopeCipher:
    cipher = EnvelopeCipher()
    for i, key_id in enumerate(ids):
        cipher.add_key(key_id, new_key(), active=i == len(ids) - 1)
    return cipher


# -- associated data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        (record(owner="ab", id="c"), record(owner="a", id="bc")),  # the field boundary moves
        (record(room="ab", owner="c"), record(room="a", owner="bc")),
        (record(id="x", delegated_to="y"), record(id="xy")),
        (record(delegated_to=None), record(delegated_to="o")),
        (record(version=1), record(version=2)),
        (record(room="r1"), record(room="r2")),
        (record(kind="plain"), record(kind="oauth")),
    ],
)
def test_aad_names_the_place_unambiguously(a: SecretRecord, b: SecretRecord) -> None:
    assert secret_aad(a) != secret_aad(b)
    cipher = cipher_with("k1")
    blob = cipher.encrypt(b"value", secret_aad(a))
    assert cipher.decrypt(blob, secret_aad(a)) == b"value"
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(blob, secret_aad(b))


def test_project_aad_differs_from_room_aad_and_by_kind() -> None:
    keys = ProjectSecretRecord("x", "x", "keys", 1, 0.0, 0.0)
    pull = ProjectSecretRecord("x", "x", "pull", 1, 0.0, 0.0)
    assert project_aad(keys) != project_aad(pull)
    assert project_aad(keys) != secret_aad(record(id="x"))


# -- tampering ----------------------------------------------------------------------------------


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]


def test_every_flipped_byte_of_value_ciphertext_fails() -> None:
    """Nonce (first 12 bytes), body and GCM tag (last 16): each byte is covered."""
    cipher = cipher_with("k1")
    aad = secret_aad(record())
    blob = cipher.encrypt(b"a value of some length", aad)
    assert len(blob.ciphertext) == NONCE + 22 + 16
    for offset in range(len(blob.ciphertext)):
        bad = EncryptedBlob(blob.kek_id, blob.wrapped_dek, _flip(blob.ciphertext, offset))
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(bad, aad)


def test_every_flipped_byte_of_wrapped_data_key_fails() -> None:
    cipher = cipher_with("k1")
    aad = secret_aad(record())
    blob = cipher.encrypt(b"v", aad)
    for offset in range(len(blob.wrapped_dek)):
        bad = EncryptedBlob(blob.kek_id, _flip(blob.wrapped_dek, offset), blob.ciphertext)
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(bad, aad)


def test_truncated_swapped_or_unknown_key_fails_with_one_generic_error() -> None:
    cipher = cipher_with("k1", "k2")
    aad = secret_aad(record())
    blob = cipher.encrypt(b"v", aad)
    other = cipher.encrypt(b"w", aad)
    cases = [
        EncryptedBlob(blob.kek_id, blob.wrapped_dek, blob.ciphertext[:-1]),
        EncryptedBlob(blob.kek_id, blob.wrapped_dek, b""),
        EncryptedBlob(blob.kek_id, b"", blob.ciphertext),
        EncryptedBlob("k1", blob.wrapped_dek, blob.ciphertext),  # the wrapped DEK is bound to its key id
        EncryptedBlob("nope", blob.wrapped_dek, blob.ciphertext),
        EncryptedBlob(blob.kek_id, other.wrapped_dek, blob.ciphertext),  # another value's data key
        EncryptedBlob(blob.kek_id, blob.wrapped_dek, other.ciphertext),
    ]
    messages = set()
    for bad in cases:
        with pytest.raises(DecryptionFailed) as info:
            cipher.decrypt(bad, aad)
        messages.add(info.value.message)
    assert messages == {"the stored secret cannot be decrypted"}


# -- nonces -------------------------------------------------------------------------------------


def test_nonces_and_ciphertexts_are_unique_over_1000_encryptions() -> None:
    cipher = cipher_with("k1")
    aad = secret_aad(record())
    blobs = [cipher.encrypt(b"same plaintext", aad) for _ in range(1000)]
    value_nonces = {b.ciphertext[:NONCE] for b in blobs}
    dek_nonces = {b.wrapped_dek[:NONCE] for b in blobs}
    assert len(value_nonces) == 1000
    assert len(dek_nonces) == 1000
    assert len({b.ciphertext for b in blobs}) == 1000
    assert len({b.wrapped_dek for b in blobs}) == 1000
    assert all(b"same plaintext" not in b.ciphertext for b in blobs)


# -- keys ---------------------------------------------------------------------------------------


def test_rewrap_keeps_the_value_and_moves_it_to_the_new_key() -> None:
    cipher = cipher_with("k1")
    aad = secret_aad(record())
    blob = cipher.encrypt(b"keep me", aad)
    cipher.add_key("k2", new_key(), active=True)
    moved = cipher.rewrap(blob, aad)
    assert moved.kek_id == "k2"
    assert moved.ciphertext == blob.ciphertext  # the value itself is not touched
    assert moved.wrapped_dek != blob.wrapped_dek
    cipher.drop_key("k1")
    assert cipher.decrypt(moved, aad) == b"keep me"
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(blob, aad)  # the old wrapping needs the dropped key


def test_active_key_cannot_be_dropped_and_a_cipher_without_keys_is_sealed() -> None:
    cipher = cipher_with("k1")
    with pytest.raises(ValueError):
        cipher.drop_key("k1")
    with pytest.raises(Sealed):
        EnvelopeCipher().encrypt(b"v", b"aad")


def test_master_key_wraps_bound_to_key_id_and_wrong_master_is_sealed() -> None:
    master = MasterKey(new_key())
    kek = new_key()
    wrapped = master.wrap("k1", kek)
    assert master.unwrap("k1", wrapped) == kek
    with pytest.raises(Sealed):
        master.unwrap("k2", wrapped)
    with pytest.raises(Sealed) as info:
        MasterKey(new_key()).unwrap("k1", wrapped)
    assert "master_key_file" in info.value.message
    assert kek.hex() not in repr(master) and "hidden" in repr(master)


def test_reprs_hide_key_material_and_values() -> None:
    cipher = cipher_with("k1")
    blob = cipher.encrypt(b"CANARY-repr", b"aad")
    assert "CANARY" not in repr(blob) and blob.ciphertext.hex() not in repr(blob)
    assert "k1" in repr(cipher) and cipher._keks["k1"].hex() not in repr(cipher)
