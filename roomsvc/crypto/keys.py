"""Key material on disk and in the environment, and development-mode generation.

* The **master key** (32 random bytes, base64 in a 0600 file or ``ROOMSVC_MASTER_KEY``)
  wraps the key-encryption keys stored in the database.
* The **signing keyring** (JSON in a 0600 file, or one MeshAgent-style API key in
  ``ROOMSVC_SIGNING_KEY``) signs and verifies participant tokens.

Keys are generated only into a data directory that has no database yet and only when
none are configured (development mode). A database whose master key is missing is
*sealed*: roomsvc refuses to start rather than create a key that cannot open it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from roomsvc.crypto.envelope import KEY_BYTES, MasterKey
from roomsvc.crypto.tokens import SigningKey, SigningKeyring
from roomsvc.errors import ConfigError, InvalidRequest, Sealed

API_KEY_PREFIX = "ma-"

log = logging.getLogger("roomsvc.keys")


@dataclass(frozen=True)
class KeySources:
    master_key_env: str
    master_key_path: Path
    master_key_configured: bool
    signing_key_env: str
    signing_key_path: Path
    signing_key_configured: bool
    generate_if_missing: bool


@dataclass(frozen=True)
class LoadedKeys:
    master: MasterKey
    signing: SigningKeyring
    generated: tuple[str, ...]  # paths written in development mode

    @property
    def development_mode(self) -> bool:
        return bool(self.generated)


def load_keys(sources: KeySources, *, database_exists: bool) -> LoadedKeys:
    """Load (or, in an empty data directory, generate) the master and signing keys.

    Raises:
        Sealed: a database exists but its master key is not available.
        ConfigError: a configured key is unreadable or malformed.
    """
    generated: list[str] = []
    master = _read_master(sources)
    if master is None:
        if database_exists:
            raise Sealed(
                f"sealed: the data directory has a database but no master key at {str(sources.master_key_path)!r}; "
                "provide it with keys.master_key_file (ROOMSVC_KEYS_MASTER_KEY_FILE) or ROOMSVC_MASTER_KEY. "
                "A new key would not open the stored secrets, so none is generated."
            )
        if sources.master_key_configured or not sources.generate_if_missing:
            raise ConfigError("keys.master_key_file", f"{str(sources.master_key_path)!r} does not exist")
        raw = secrets.token_bytes(KEY_BYTES)
        _write_private(sources.master_key_path, base64.b64encode(raw).decode() + "\n")
        generated.append(str(sources.master_key_path))
        master = MasterKey(raw)
    signing = read_signing_keyring(sources)
    if signing is None:
        if database_exists or sources.signing_key_configured or not sources.generate_if_missing:
            raise ConfigError(
                "keys.signing_key_file",
                f"{str(sources.signing_key_path)!r} does not exist; provide it or set ROOMSVC_SIGNING_KEY",
            )
        signing = new_signing_keyring()
        write_signing_keyring(sources.signing_key_path, signing)
        generated.append(str(sources.signing_key_path))
    return LoadedKeys(master=master, signing=signing, generated=tuple(generated))


def _read_master(sources: KeySources) -> MasterKey | None:
    if sources.master_key_env:
        return MasterKey(_decode_master(sources.master_key_env, "ROOMSVC_MASTER_KEY"))
    path = sources.master_key_path
    if not path.exists():
        return None
    return MasterKey(_decode_master(_read_private(path, "keys.master_key_file"), "keys.master_key_file"))


def _decode_master(text: str, key: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(key, "must be 32 bytes in base64") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(key, "must be 32 bytes in base64")
    return raw


def read_signing_keyring(sources: KeySources) -> SigningKeyring | None:
    if sources.signing_key_env:
        try:
            return keyring_from_api_key(sources.signing_key_env)
        except InvalidRequest as exc:
            raise ConfigError("ROOMSVC_SIGNING_KEY", exc.message) from None
    path = sources.signing_key_path
    if not path.exists():
        return None
    text = _read_private(path, "keys.signing_key_file")
    try:
        data = json.loads(text)
        keys = tuple(SigningKey(k["kid"], k["secret"].encode()) for k in data["keys"])
        if not keys:
            raise ValueError("no keys")
        return SigningKeyring(keys=keys, project_id=data["project_id"])
    except (ValueError, KeyError, TypeError, AttributeError, InvalidRequest) as exc:
        raise ConfigError("keys.signing_key_file", f"{str(path)!r} is not a roomsvc signing keyring ({type(exc).__name__})") from None


def new_signing_keyring(project_id: str | None = None) -> SigningKeyring:
    # the secret is a URL-safe string because MeshAgent uses the API key's text as the
    # HMAC key; 32 random bytes give 256 bits of entropy
    key = SigningKey(str(uuid.uuid4()), secrets.token_urlsafe(32).encode())
    return SigningKeyring(keys=(key,), project_id=project_id or str(uuid.uuid4()))


def write_signing_keyring(path: Path, keyring: SigningKeyring) -> None:
    data = {
        "project_id": keyring.project_id,
        "keys": [{"kid": k.kid, "secret": k.secret.decode()} for k in keyring.keys],
    }
    _write_private(path, json.dumps(data, indent=2) + "\n")


# -- MeshAgent API keys: ma-<kid>-<project>-<secret>, ids as base64url UUIDs with '.' for '-'


def _compress_uuid(value: str) -> str:
    return base64.urlsafe_b64encode(uuid.UUID(value).bytes).decode().replace("-", ".").rstrip("=")


def _decompress_uuid(value: str) -> str:
    padded = value.replace(".", "-") + "=" * (-len(value) % 4)
    return str(uuid.UUID(bytes=base64.urlsafe_b64decode(padded)))


def api_key_for(keyring: SigningKeyring) -> str:
    key = keyring.primary
    return f"{API_KEY_PREFIX}{_compress_uuid(key.kid)}-{_compress_uuid(keyring.project_id)}-{key.secret.decode()}"


def keyring_from_api_key(text: str) -> SigningKeyring:
    if not text.startswith(API_KEY_PREFIX):
        raise InvalidRequest("an API key starts with 'ma-'")
    parts = text[len(API_KEY_PREFIX):].split("-", 2)
    if len(parts) != 3:
        raise InvalidRequest("an API key has the form ma-<kid>-<project>-<secret>")
    try:
        kid, project = _decompress_uuid(parts[0]), _decompress_uuid(parts[1])
    except (ValueError, binascii.Error):
        raise InvalidRequest("the API key's key id or project id is not valid") from None
    return SigningKeyring(keys=(SigningKey(kid, parts[2].encode()),), project_id=project)


# -- files ------------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _read_private(path: Path, key: str) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {str(path)!r}: {exc.strerror}") from None
    if mode & 0o077:
        log.warning("%s (%s) is readable by other users (mode %o); chmod 600 it", path, key, mode & 0o777)
    return text
