"""OAuth tokens for participants: the service transports and the vault talk to.

A participant (the requester) asks for a token for a connector or an inline config
from participant P. A stored, usable credential whose consent (by P) covers the
requester is returned at once, refreshed first when due; otherwise P is asked again
(:mod:`roomsvc.domain.oauth.consent`). The credential is a room secret of kind
``oauth`` owned by P, the identity that consents, and stored ``delegated_to`` the
request's ``delegate_to`` (:mod:`roomsvc.domain.oauth.credentials`): a request can
never write into a third identity's namespace. Who may do what is
:mod:`roomsvc.domain.policy`'s decision; refreshes are single-flight
(:mod:`roomsvc.domain.oauth.refresh`).

The stored credentials (vault, refresher, the hooks the vault and header injection
use) are :class:`~roomsvc.domain.oauth.tokens.OAuthCredentials`, built before this
service and before :class:`~roomsvc.domain.secrets.SecretService`. See docs/oauth.md.
"""

from __future__ import annotations

from typing import Any, Mapping

from roomsvc.domain.audit import Auditor
from roomsvc.domain.oauth.connectors import (
    ClientConfig,
    check_grant,
    check_inline_allowed,
    narrow,
    parse_connector_name,
    parse_inline_config,
    parse_scopes,
)
from roomsvc.domain.oauth.consent import ConsentFlows, OAuthPolicy
from roomsvc.domain.oauth.credentials import ACTIVE, TokenGrant
from roomsvc.domain.oauth.flows import BrowserStart, CallbackResult, StartPage
from roomsvc.domain.oauth.refresh import StoredCredential
from roomsvc.domain.oauth.registry import ConnectorRegistry
from roomsvc.domain.oauth.tokens import OAuthCredentials
from roomsvc.domain.policy import Action
from roomsvc.domain.policy import Address as PolicyAddress
from roomsvc.domain.ports import SecretRecord
from roomsvc.domain.principal import Principal
from roomsvc.domain.ratelimit import SECRET_OPS, RateLimiter
from roomsvc.domain.rooms import Participant, RoomService
from roomsvc.domain.secret_writes import KIND_OAUTH
from roomsvc.domain.secrets import Address, SecretService
from roomsvc.errors import DecryptionFailed, InvalidRequest, ReauthRequired
from roomsvc.ids import RoomName, SecretId, parse_identity

__all__ = ["OAuthPolicy", "OAuthService", "TokenGrant"]


class OAuthService:
    def __init__(
        self,
        *,
        rooms: RoomService,
        secrets: SecretService,
        credentials: OAuthCredentials,
        consent: ConsentFlows,
        registry: ConnectorRegistry,
        auditor: Auditor,
        policy: OAuthPolicy,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._limiter = limiter or RateLimiter.off()
        self._rooms = rooms
        self.registry = registry
        self._audit = auditor
        self.policy = policy
        #: checks and decisions only (the policy's): credentials are written by the vault
        self._secrets = secrets
        self._vault = credentials.vault
        self.refresher = credentials.refresher
        self.consent = consent

    # -- tokens ---------------------------------------------------------------------------------

    async def request_token(
        self,
        requester: Participant,
        *,
        from_participant_id: str,
        connector: str | None = None,
        oauth: Mapping[str, Any] | None = None,
        delegate_to: str | None = None,
        timeout: float | None = None,
        redirect_uri: str | None = None,
    ) -> TokenGrant:
        """A token for the requester: a stored one P's consent covers, or a new consent by P.

        Raises:
            PermissionDenied: the secrets grant or the inline allow-list refuses the client.
            NotFound: no such connector or participant.
            Timeout: P did not complete the consent in time.
            Rejected: P (or the person at the provider) declined.
            OAuthError: the provider refused the code exchange.
        """
        self._limiter.check(SECRET_OPS, requester.room, requester.identity)
        caller = requester.principal
        client = await self.client_for(caller, connector, oauth)
        target = self._rooms.find(requester.room, from_participant_id)
        # the credential belongs to the identity that consents; delegate_to names who may use it
        delegate = parse_identity(delegate_to) if delegate_to else None
        if delegate == target.identity:
            delegate = None
        addr = Address(requester.room, target.identity, SecretId(client.credential_id), delegate)
        await self._secrets.check(caller, Action.REQUEST, addr, "oauth", asked=target.identity)
        wait = self._timeout(timeout)
        grant = await self._stored_grant(caller, addr, consenter=target.identity)
        if grant is not None:
            await self._audit.record(caller, addr, "oauth_token", "oauth", "ok", "stored credential")
            return grant
        return await self.consent.ask(requester, target, client, addr, wait, redirect_uri)

    async def offline_token(
        self,
        caller: Principal,
        room: str,
        *,
        connector: str | None = None,
        oauth: Mapping[str, Any] | None = None,
        delegated_to: str | None = None,
        delegated_by: str | None = None,
    ) -> TokenGrant | None:
        """A usable stored token without asking anyone, or None. The credential is the
        one owned by ``delegated_to``, else by ``delegated_by`` (the identity that
        consented), else by the caller; its consent must cover the caller.

        Raises:
            ReauthRequired: the credential exists but its grant is dead.
        """
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        client = await self.client_for(caller, connector, oauth)
        cid = SecretId(client.credential_id)
        room_ = RoomName(room)
        # room, grant, expiry and use-only first, on the caller's own address
        await self._secrets.check(caller, Action.READ, Address(room_, caller.identity, cid, None), "oauth")
        stored = None
        for addr in await self._offline_candidates(caller, room_, cid, delegated_to, delegated_by):
            stored = await self._vault.load(addr)
            if stored is not None:
                break
        if stored is None:
            return None
        covers = frozenset(stored.credential.covers)
        if not self._secrets.decide(caller, Action.READ, _policy_address(stored.address, covers)).allowed:
            return None  # someone else's credential looks exactly like a missing one
        fresh = await self.refresher.fresh(stored.address)
        await self._audit.record(caller, stored.address, "oauth_token", "oauth", "ok", "offline")
        return _grant(fresh)

    async def _offline_candidates(
        self, caller: Principal, room: RoomName, cid: SecretId, delegated_to: str | None, delegated_by: str | None
    ) -> list[Address]:
        """Where MeshAgent's (delegated_to, delegated_by) pair may name a credential: the
        owner is the identity that consented (``delegated_by``), ``delegated_to`` the one it
        was delegated to; a credential the owner holds undelegated counts when its consent
        covers the caller."""
        to = parse_identity(delegated_to) if delegated_to else None
        if delegated_by:
            owner = parse_identity(delegated_by)
            if to is not None:
                return [Address(room, owner, cid, to)]
            return [Address(room, owner, cid, caller.identity), Address(room, owner, cid, None)]
        if to is not None and to != caller.identity:
            return [Address(room, caller.identity, cid, to)]
        if to == caller.identity:
            found = await self._vault.delegated_to(room, cid, caller.identity)
            return found[:1] if len(found) == 1 else []
        return [Address(room, caller.identity, cid, None)]

    async def client_for(self, caller: Principal, connector: str | None, oauth: Mapping[str, Any] | None) -> ClientConfig:
        """The client a request names, after the inline allow-list and the caller's grant.
        With a connector, an ``oauth.scopes`` list may narrow its scopes.

        Raises:
            InvalidRequest, NotFound, PermissionDenied.
        """
        if connector:
            client = await self.registry.resolve(parse_connector_name(connector))
            if isinstance(oauth, Mapping) and oauth.get("scopes"):
                client = narrow(client, parse_scopes(oauth.get("scopes"), "oauth.scopes"))
        elif oauth is not None:
            client = parse_inline_config(oauth, insecure_ok=self.policy.insecure_ok)
            check_inline_allowed(client, self.policy.inline_endpoints)
        else:
            raise InvalidRequest("name a 'connector' or give an inline 'oauth' client config")
        check_grant(caller.api.get("secrets"), client.authorization_endpoint, client.client_id)
        return client

    async def _stored_grant(self, caller: Principal, addr: Address, *, consenter: str) -> TokenGrant | None:
        stored = await self._vault.load(addr)
        if stored is None:
            return None
        cred = stored.credential
        if cred.status != ACTIVE or cred.consented_by != consenter:
            return None
        if not self._secrets.decide(caller, Action.READ, _policy_address(addr, frozenset(cred.covers))).allowed:
            return None  # the consent did not cover this requester: ask again
        try:
            return _grant(await self.refresher.fresh(addr))
        except ReauthRequired:
            return None

    async def describe_credentials(self, records: list[SecretRecord]) -> list[dict[str, Any]]:
        """What the room console shows of the OAuth credentials among ``records`` (which
        the caller was allowed to list, see :meth:`SecretService.list`): the record's
        metadata with status, connected account, scopes and who the consent covers.
        Never a token, a refresh token or a client secret."""
        shown = []
        for record in records:
            if record.kind != KIND_OAUTH:
                continue
            try:
                stored = await self._vault.load(Address(record.room, record.owner, record.id, record.delegated_to))
            except DecryptionFailed:
                # one bad row does not hide the others; reading it still fails (and is audited) there
                shown.append({**record.as_dict(), "status": "unreadable"})
                continue
            if stored is not None:
                shown.append({**record.as_dict(), **stored.credential.metadata()})
        return shown

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.policy.flow_timeout
        limit = self.policy.max_flow_timeout
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not max(self.policy.min_flow_timeout, 1e-9) <= timeout <= limit:
            raise InvalidRequest(f"'timeout' must be a number of seconds from {self.policy.min_flow_timeout:g} to {limit:g} (oauth.min_flow_timeout, oauth.max_flow_timeout)")
        return float(timeout)

    # -- answering consent requests (see ConsentFlows) -----------------------------------------------

    async def describe_start_link(self, ticket: str | None) -> StartPage:
        return await self.consent.describe_start_link(ticket)

    async def open_start_link(self, ticket: str | None) -> BrowserStart:
        return await self.consent.open_start_link(ticket)

    async def complete_callback(self, params: Mapping[str, str], cookies: Mapping[str, str]) -> CallbackResult:
        return await self.consent.complete_callback(params, cookies)

    async def provide_authorization(self, participant: Participant, request_id: str, code: str) -> None:
        await self.consent.provide_authorization(participant, request_id, code)

    async def reject_authorization(self, participant: Participant, request_id: str, error: str | None) -> None:
        await self.consent.reject_authorization(participant, request_id, error)


def _policy_address(addr: Address, covers: frozenset[str]) -> PolicyAddress:
    return PolicyAddress(addr.room, addr.owner, addr.id, addr.delegated_to, covers=covers)


def _grant(stored: StoredCredential) -> TokenGrant:
    return TokenGrant.of(
        stored.credential, id=stored.address.id, owner=stored.address.owner, version=stored.version,
        delegated_to=stored.address.delegated_to,
    )
