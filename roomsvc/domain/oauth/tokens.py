"""OAuth credentials at rest, for the services that read them.

:class:`OAuthCredentials` holds the vault, the single-flight refresher and the client
secrets, and fills the ports other services take:

* :class:`~roomsvc.domain.secrets.OAuthHooks` for :class:`~roomsvc.domain.secrets.SecretService`:
  reading a credential gives its current access token, deleting it revokes the grant;
* :class:`~roomsvc.domain.headers.AccessTokens` for header injection;
* the credential store of :class:`~roomsvc.domain.oauth.service.OAuthService`.

It is built first of the three: the vault writes through
:class:`~roomsvc.domain.secret_writes.SecretWriter`, not through ``SecretService``, so
nothing here needs a service that needs it (the order is in :mod:`roomsvc.app`).
A credential whose grant is dead is marked so and its owner told with a
:class:`~roomsvc.domain.events.CredentialNeedsReauth` notice.
"""

from __future__ import annotations

import logging

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.events import CredentialNeedsReauth
from roomsvc.domain.headers import FreshToken
from roomsvc.domain.oauth.clients import ClientSecrets
from roomsvc.domain.oauth.credentials import OAuthCredential, backoff_delays
from roomsvc.domain.oauth.ports import KeyedLock, OAuthProvider
from roomsvc.domain.oauth.refresh import SYSTEM_IDENTITY, CredentialVault, Refresher, StoredCredential
from roomsvc.domain.ports import Cipher, SecretRecord, SecretRepository
from roomsvc.domain.principal import Principal
from roomsvc.domain.rooms import RoomService
from roomsvc.domain.secret_writes import Address, SecretWriter
from roomsvc.domain.secrets import OAuthToken
from roomsvc.errors import RoomsvcError
from roomsvc.ids import SecretBytes

log = logging.getLogger("roomsvc.oauth")


class OAuthCredentials:
    def __init__(
        self,
        *,
        store: SecretRepository,
        cipher: Cipher,
        writer: SecretWriter,
        clients: ClientSecrets,
        provider: OAuthProvider,
        lock: KeyedLock,
        rooms: RoomService,
        auditor: Auditor,
        clock: Clock,
        refresh_margin: float,
        assumed_token_lifetime: float,
        refresh_retries: int,
        refresh_backoff: float,
    ) -> None:
        self._rooms = rooms
        self._provider = provider
        self._audit = auditor
        self.clients = clients
        self.vault = CredentialVault(store=store, cipher=cipher, writer=writer)
        self.refresher = Refresher(
            vault=self.vault, provider=provider, lock=lock, clock=clock, client_auth=clients.for_credential,
            on_reauth=self._reauth_required, margin=refresh_margin, assumed_lifetime=assumed_token_lifetime,
            delays=backoff_delays(refresh_retries, refresh_backoff), observer=auditor.observer,
        )

    # -- SecretService's hooks -----------------------------------------------------------------

    async def oauth_value(self, record: SecretRecord, value: SecretBytes) -> OAuthToken:
        # the value was just read and decrypted with ``record``: no second read when usable
        loaded = StoredCredential(_addr(record), record.version, OAuthCredential.from_bytes(value.reveal()))
        cred = (await self.refresher.fresh(_addr(record), loaded)).credential
        return OAuthToken(cred.access_token.encode(), expires_at=cred.expires_at, allowed_hosts=cred.allowed_hosts or None)

    async def oauth_deleted(self, record: SecretRecord, value: SecretBytes) -> None:
        """Revoke the grant (RFC 7009): the refresh token, or the access token without one.
        Best effort: the credential is already gone; a failure is logged and audited."""
        cred = OAuthCredential.from_bytes(value.reveal())
        if not cred.revocation_endpoint:
            return
        token, hint = (cred.refresh_token, "refresh_token") if cred.refresh_token else (cred.access_token, "access_token")
        addr = _addr(record)
        try:
            auth = await self.clients.for_credential(cred)
            await self._provider.revoke(cred.revocation_endpoint, auth, token=token, token_type_hint=hint)
        except RoomsvcError as exc:
            log.warning("revoking the deleted OAuth credential %s in %s failed: %s", record.id, record.room, exc.message)
            await self._audit.record(SYSTEM_IDENTITY, addr, "oauth_revoke", "oauth", "failed", exc.name)
            return
        await self._audit.record(SYSTEM_IDENTITY, addr, "oauth_revoke", "oauth", "ok")

    # -- header injection's AccessTokens ----------------------------------------------------------

    async def fresh_access_token(self, caller: Principal, record: SecretRecord, *, channel: str) -> FreshToken:
        fresh = await self.refresher.fresh(_addr(record))
        cred = fresh.credential
        return FreshToken(cred.access_token, cred.expires_at, cred.allowed_hosts or None)

    # -- the refresher's dead grants ----------------------------------------------------------------

    async def _reauth_required(self, stored: StoredCredential, reason: str) -> None:
        addr, cred = stored.address, stored.credential
        self._rooms.notify_identity(addr.room, addr.owner, CredentialNeedsReauth(
            id=addr.id, connector=cred.connector or None, subject=cred.subject, reason=reason,
        ))
        await self._audit.record(SYSTEM_IDENTITY, addr, "oauth_refresh", "oauth", "reauth_required", reason)


def _addr(record: SecretRecord) -> Address:
    return Address(record.room, record.owner, record.id, record.delegated_to)
