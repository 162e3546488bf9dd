"""Stored OAuth credentials: raw access for the OAuth service, and a refresh that cannot race.

:class:`CredentialVault` is the only code that reads a credential's full value (refresh
token included); it writes through :class:`~roomsvc.domain.secret_writes.SecretWriter`
(the write path :class:`~roomsvc.domain.secrets.SecretService` uses too) with
``kind="oauth"`` and a compare-and-swap on the version, so every change is versioned
and audited. It decides nothing: its callers (the OAuth service, the refresher) act
only on addresses the policy already allowed. Not needing ``SecretService`` is what
lets the OAuth hooks be built before it.

:class:`Refresher` makes sure one credential is refreshed by one caller at a time:

1. read; usable (active, not expiring within the margin) -> done;
2. take the credential's lock (:class:`~roomsvc.domain.oauth.ports.KeyedLock`), re-read
   (another caller may have refreshed it meanwhile) -> usable -> done;
3. refresh at the token endpoint; write with ``expected_version`` = the version read;
   a response without a refresh token keeps the old one;
4. ``invalid_grant``: re-read; a changed version is a lost race (use the new token),
   otherwise mark the credential ``reauth_required`` and tell the owner;
5. transient errors (5xx, 429, timeouts) are retried with bounded backoff; the
   credential is never changed by them, and its access token stays in use until it
   really expires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from types import MappingProxyType

from roomsvc.clock import Clock
from roomsvc.domain.oauth.credentials import (
    CREDENTIAL_TYPE,
    REAUTH_REQUIRED,
    OAuthCredential,
    apply_refresh,
)
from roomsvc.domain.oauth.ports import ClientAuth, KeyedLock, OAuthProvider
from roomsvc.domain.observe import NOOP, Observer
from roomsvc.domain.ports import Cipher, SecretRepository
from roomsvc.domain.principal import Principal
from roomsvc.domain.secret_writes import KIND_OAUTH, Address, SecretWriter, secret_aad
from roomsvc.errors import Conflict, NotFound, OAuthError, ProviderUnavailable, ReauthRequired
from roomsvc.ids import Identity, RoomName, SecretId

log = logging.getLogger("roomsvc.oauth")

#: the identity recorded in the audit log for writes the OAuth service makes
SYSTEM_IDENTITY = Identity("roomsvc:oauth")


def system_principal(room: RoomName) -> Principal:
    return Principal(
        identity=SYSTEM_IDENTITY, room=room, role="agent", api=MappingProxyType({"secrets": {}, "admin": {}})
    )


@dataclass(frozen=True)
class StoredCredential:
    address: Address
    version: int
    credential: OAuthCredential


class LocalLocks:
    """A :class:`KeyedLock` for one process: an asyncio lock per key, dropped when idle."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._locks.pop(key, None)


class CredentialVault:
    def __init__(self, *, store: SecretRepository, cipher: Cipher, writer: SecretWriter) -> None:
        self._store = store
        self._cipher = cipher
        self._writer = writer

    async def load(self, addr: Address) -> StoredCredential | None:
        """The credential at ``addr``, or None (also when the id holds a plain secret).

        Raises:
            DecryptionFailed: the stored ciphertext does not open.
        """
        found = await self._store.get_secret(addr.room, addr.owner, addr.id, addr.delegated_to)
        if found is None or found[0].kind != KIND_OAUTH:
            return None
        record, blob = found
        credential = OAuthCredential.from_bytes(self._cipher.decrypt(blob, secret_aad(record)))
        return StoredCredential(addr, record.version, credential)

    async def delegated_to(self, room: RoomName, id: SecretId, delegate: Identity) -> list[Address]:
        """Addresses of the OAuth credentials with that id that their owners delegated to ``delegate``."""
        return [
            Address(r.room, r.owner, r.id, r.delegated_to)
            for r in await self._store.find_delegated(room, id, delegate) if r.kind == KIND_OAUTH
        ]

    async def save(self, addr: Address, credential: OAuthCredential, *, expected_version: int) -> StoredCredential:
        """Write a new version if the current one is still ``expected_version`` (0 = new).

        Raises:
            Conflict: someone wrote first (or a plain secret holds the id).
        """
        record = await self._writer.write(
            system_principal(addr.room), addr, credential.to_bytes(), type=CREDENTIAL_TYPE,
            name=credential.connector or addr.id, kind=KIND_OAUTH, expected_version=expected_version, channel="oauth",
        )
        return StoredCredential(addr, record.version, credential)


ClientAuthFor = Callable[[OAuthCredential], Awaitable[ClientAuth]]
ReauthHook = Callable[[StoredCredential, str], Awaitable[None]]


class Refresher:
    def __init__(
        self,
        *,
        vault: CredentialVault,
        provider: OAuthProvider,
        lock: KeyedLock,
        clock: Clock,
        client_auth: ClientAuthFor,
        on_reauth: ReauthHook,
        margin: float,
        assumed_lifetime: float,
        delays: list[float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observer: Observer = NOOP,
    ) -> None:
        self._observer = observer
        self._vault = vault
        self._provider = provider
        self._lock = lock
        self._clock = clock
        self._client_auth = client_auth
        self._on_reauth = on_reauth
        self.margin = margin
        self._assumed = assumed_lifetime
        self._delays = delays
        self._sleep = sleep
        #: refreshes sent to providers (a figure for tests and metrics)
        self.refreshes = 0

    async def fresh(self, addr: Address, loaded: StoredCredential | None = None) -> StoredCredential:
        """A usable credential, refreshed first when it expires within the margin.

        ``loaded``: the credential the caller has just read and decrypted (spares a second
        read when it is usable; otherwise it is re-read under the lock as always).

        Raises:
            NotFound: no credential there.
            ReauthRequired: the grant is dead (revoked, expired, no refresh token).
            ProviderUnavailable: the provider kept failing and the token has expired.
            OAuthError: the provider refused the refresh for another reason.
        """
        current = loaded if loaded is not None else await self._must_load(addr)
        if current.credential.usable(self._clock.now(), self.margin):
            return current
        async with self._lock.hold(lock_key(addr)):
            # re-read under the lock: a caller we waited for may have refreshed it already
            current = await self._must_load(addr)
            if current.credential.usable(self._clock.now(), self.margin):
                return current
            if current.credential.status == REAUTH_REQUIRED:
                raise ReauthRequired(_reauth_message(addr))
            return await self._refresh_locked(current)

    async def _must_load(self, addr: Address) -> StoredCredential:
        found = await self._vault.load(addr)
        if found is None:
            raise NotFound(f"no OAuth credential {addr.id!r}")
        return found

    async def _refresh_locked(self, current: StoredCredential) -> StoredCredential:
        cred = current.credential
        if not cred.refresh_token:
            if cred.unexpired(self._clock.now()):
                return current
            return await self._mark_reauth(current, "expired without a refresh token")
        auth = await self._client_auth(cred)
        failure: ProviderUnavailable | None = None
        connector = cred.connector or "inline"
        for delay in [0.0, *self._delays]:
            if delay:
                await self._sleep(delay)
            began = self._clock.monotonic()
            try:
                self.refreshes += 1
                with self._observer.span("oauth.refresh", room=current.address.room, operation="refresh", connector=connector):
                    response = await self._provider.refresh(
                        cred.token_endpoint, auth, refresh_token=cred.refresh_token,
                        **({"resource": cred.resource} if cred.resource else {}),
                    )
            except ProviderUnavailable as exc:
                self._observer.token_refresh(connector, "unavailable", self._clock.monotonic() - began)
                log.warning("refresh of %s/%s: provider unavailable (%s)", current.address.room, current.address.id, exc.message)
                failure = exc
                continue
            except OAuthError as exc:
                outcome = "invalid_grant" if exc.error == "invalid_grant" else "error"
                self._observer.token_refresh(connector, outcome, self._clock.monotonic() - began)
                if exc.error != "invalid_grant":
                    raise
                return await self._invalid_grant(current)
            self._observer.token_refresh(connector, "ok", self._clock.monotonic() - began)
            updated = apply_refresh(cred, response, self._clock.now(), self._assumed)
            try:
                return await self._vault.save(current.address, updated, expected_version=current.version)
            except Conflict:
                # a newer version landed (another node, a new consent): prefer it
                latest = await self._must_load(current.address)
                if latest.credential.usable(self._clock.now(), 0):
                    return latest
                raise
        if cred.unexpired(self._clock.now()):
            return current
        assert failure is not None
        raise ProviderUnavailable(f"the OAuth provider is unavailable and the token has expired ({failure.message})")

    async def _invalid_grant(self, current: StoredCredential) -> StoredCredential:
        latest = await self._must_load(current.address)
        if latest.version != current.version and latest.credential.usable(self._clock.now(), 0):
            return latest  # lost a race: someone refreshed with the token we had
        return await self._mark_reauth(current, "the provider refused the refresh token (invalid_grant)")

    async def _mark_reauth(self, current: StoredCredential, reason: str) -> StoredCredential:
        dead = replace(current.credential, status=REAUTH_REQUIRED)
        try:
            marked = await self._vault.save(current.address, dead, expected_version=current.version)
        except Conflict:
            latest = await self._must_load(current.address)
            if latest.credential.usable(self._clock.now(), 0):
                return latest
            raise ReauthRequired(_reauth_message(current.address)) from None
        log.info("OAuth credential %s of %s in %s needs re-authorization: %s",
                 current.address.id, current.address.owner, current.address.room, reason)
        await self._on_reauth(marked, reason)
        raise ReauthRequired(_reauth_message(current.address))


def lock_key(addr: Address) -> str:
    return f"oauth-refresh\n{addr.room}\n{addr.owner}\n{addr.id}\n{addr.delegated_to or ''}"


def _reauth_message(addr: Address) -> str:
    return f"the OAuth credential {addr.id!r} needs re-authorization: request a token again to ask its owner"
