"""Asking a participant to consent, and finishing the flow it starts.

How the participant asked (P) answers depends on its capabilities, set by its transport
when it joined (:class:`~roomsvc.domain.rooms.Capabilities`):

* a participant that does not run its own redirect gets a **start link**
  (:meth:`Links.start_url <roomsvc.domain.oauth.ports.Links.start_url>`) in an
  :class:`~roomsvc.domain.events.OAuthConsentRequested` notice; opening it binds the
  browser with a cookie and sends it to the provider; roomsvc's callback
  (:meth:`Links.callback_url <roomsvc.domain.oauth.ports.Links.callback_url>`) checks the
  state, the browser binding and ``iss``, exchanges the code once and stores the credential;
* one that runs its own redirect (the MeshAgent way) gets the request and the PKCE
  challenge; its app runs the redirect with the request's ``redirect_uri`` and answers
  with :meth:`ConsentFlows.provide_authorization` (the code) or
  :meth:`ConsentFlows.reject_authorization`. The verifier never leaves roomsvc.

Where the links point is the composition root's business (a :class:`Links` port built
from the public URL); how a notice looks on the wire is each protocol's.

The requester waits in memory, on the node that took its request, until the flow
completes, is rejected, fails or times out. The flow itself lives in storage, where
every move is one conditional write: a start link, a state or a code is used once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping, NoReturn

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.events import OAuthConsentRequested, RequestEnded
from roomsvc.domain.oauth.clients import ClientSecrets
from roomsvc.domain.oauth.connectors import ClientConfig, check_endpoint
from roomsvc.domain.oauth.credentials import ACTIVE, OAuthCredential, TokenGrant, TokenResponse, expiry
from roomsvc.domain.oauth.flows import (
    MODE_APP,
    MODE_LINK,
    BrowserStart,
    CallbackResult,
    Flow,
    FlowStatus,
    StartPage,
    cookie_name,
    digest,
    iss_ok,
    new_secret,
    new_verifier,
    same_secret,
    verifier_aad,
)
from roomsvc.domain.oauth.ports import ClientAuth, FlowRepository, Links, OAuthProvider
from roomsvc.domain.oauth.refresh import SYSTEM_IDENTITY, CredentialVault, StoredCredential
from roomsvc.domain.observe import Span
from roomsvc.domain.ports import Cipher
from roomsvc.domain.ratelimit import FLOWS, RateLimiter
from roomsvc.domain.rooms import Participant, RoomService
from roomsvc.domain.secrets import Address
from roomsvc.errors import (
    Conflict,
    InvalidRequest,
    InvalidState,
    NotFound,
    OAuthError,
    Overloaded,
    PermissionDenied,
    Rejected,
    RoomsvcError,
    Timeout,
)
from roomsvc.ids import Identity, ParticipantId, RoomName, SecretId

log = logging.getLogger("roomsvc.oauth")

_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
#: finished flows are deleted this long after their deadline
PURGE_AFTER = 86400.0


@dataclass(frozen=True)
class OAuthPolicy:
    """Plain values from the ``[oauth]`` settings (see config/roomsvc.toml)."""

    inline_endpoints: tuple[str, ...] = ()
    refresh_margin: float = 60.0
    assumed_token_lifetime: float = 3600.0
    state_ttl: float = 600.0
    flow_timeout: float = 300.0
    max_flow_timeout: float = 3600.0
    min_flow_timeout: float = 0.0
    max_pending_per_identity: int = 8
    refresh_retries: int = 3
    refresh_backoff: float = 0.5
    #: server.allow_insecure_loopback
    insecure_ok: bool = False


@dataclass
class _Waiter:
    future: asyncio.Future[TokenGrant]
    requester: Identity


class ConsentFlows:
    def __init__(
        self,
        *,
        rooms: RoomService,
        cipher: Cipher,
        flows: FlowRepository,
        provider: OAuthProvider,
        vault: CredentialVault,
        clients: ClientSecrets,
        auditor: Auditor,
        clock: Clock,
        links: Links,
        policy: OAuthPolicy,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._limiter = limiter or RateLimiter.off()
        self._rooms = rooms
        self._cipher = cipher
        self._flows = flows
        self._provider = provider
        self._vault = vault
        self._clients = clients
        self._audit = auditor
        self._clock = clock
        self._links = links
        self.policy = policy
        self._waiters: dict[str, _Waiter] = {}
        #: exchanges in progress, kept referenced until they end (see _exchange_to_the_end)
        self._exchanges: set[asyncio.Future[StoredCredential]] = set()
        #: issue 15: flows that ended on another node, being read back for a waiter here
        self._remote_ends: set[asyncio.Future[None]] = set()
        rooms.on_completion(self._ended_elsewhere)

    # -- asking -------------------------------------------------------------------------------------

    async def ask(
        self, requester: Participant, target: Participant, client: ClientConfig, addr: Address, wait: float,
        redirect_uri: str | None,
    ) -> TokenGrant:
        """Push a consent request to ``target`` and wait for the flow to end.

        Raises:
            Overloaded, InvalidRequest, Timeout, Rejected, PermissionDenied, OAuthError.
        """
        self._limiter.check(FLOWS, requester.room, requester.identity)
        identity = requester.identity
        if sum(1 for w in self._waiters.values() if w.requester == identity) >= self.policy.max_pending_per_identity:
            raise Overloaded(f"{identity!r} already waits for {self.policy.max_pending_per_identity} OAuth consents")
        mode = MODE_APP if target.capabilities.runs_own_redirect else MODE_LINK
        now = self._clock.now()
        flow_id, ticket, verifier = new_secret(18), new_secret(), new_verifier()
        flow = Flow(
            id=flow_id, room=requester.room, mode=mode, status=FlowStatus.PENDING, requester=identity,
            requester_participant=requester.id, consenter=target.identity, consenter_participant=target.id,
            owner=addr.owner, delegate_to=addr.delegated_to,
            credential_id=addr.id, client=client.to_record(), redirect_uri=self._redirect(mode, redirect_uri),
            created_at=now, expires_at=now + wait, start_hash=digest(ticket) if mode == MODE_LINK else "",
        )
        sealed = {"verifier": verifier, "client_secret": client.client_secret.value or None}
        blob = self._cipher.encrypt(json.dumps(sealed).encode(), verifier_aad(flow_id))
        await self._flows.create_flow(flow, blob, purge_before=now - PURGE_AFTER)
        self._audit.observer.oauth_flow(connector_label(flow), "started")
        waiter = _Waiter(asyncio.get_running_loop().create_future(), identity)
        self._waiters[flow_id] = waiter
        try:
            self._rooms.notify(target, self._notice(flow, client, requester, ticket, verifier, wait))
            await self._audit.record(requester.principal, addr, "oauth_request", "oauth", "pending", f"asked {target.identity}")
            return await asyncio.wait_for(waiter.future, wait)
        except asyncio.TimeoutError:
            await self._end(flow, FlowStatus.EXPIRED, "timeout")
            raise Timeout(f"participant {target.id!r} did not complete the OAuth consent within {wait:g} s") from None
        except asyncio.CancelledError:
            # the requester went away: its start link dies with the request
            try:
                await self._end(flow, FlowStatus.EXPIRED, "requester left")
            except RoomsvcError:
                pass  # e.g. the store is closing at shutdown; the flow's deadline ends it anyway
            raise
        finally:
            self._waiters.pop(flow_id, None)

    def _redirect(self, mode: str, requested: str | None) -> str:
        if mode == MODE_LINK:
            # never a URI from the request: roomsvc's own callback
            return check_endpoint(self._links.callback_url(), "server.public_url", insecure_ok=self.policy.insecure_ok)
        if not requested:
            raise InvalidRequest("the participant asked runs the redirect in its own app: give 'redirect_uri'")
        if len(requested) > 2048 or not requested.isprintable() or " " in requested or "://" not in requested or "#" in requested:
            raise InvalidRequest("'redirect_uri' must be an absolute URI without a fragment")
        return requested

    def _notice(
        self, flow: Flow, client: ClientConfig, requester: Participant, ticket: str, verifier: str, wait: float
    ) -> OAuthConsentRequested:
        by_link = flow.mode == MODE_LINK
        return OAuthConsentRequested(
            request_id=flow.id, connector=client.connector or None, oauth=client.public_view(),
            participant_id=ParticipantId(flow.consenter_participant), timeout=wait,
            delegate_to=Identity(flow.delegate_to) if flow.delegate_to else None, redirect_uri=flow.redirect_uri,
            requester=requester.info(), expires_at=flow.expires_at, owner=Identity(flow.owner),
            usable_by=tuple(usable_by(flow)),
            start_url=self._links.start_url(ticket) if by_link else None,
            challenge=None if by_link or not client.pkce else self._provider.s256_challenge(verifier),
        )

    # -- roomsvc's own redirect: start link and callback ------------------------------------------

    async def describe_start_link(self, ticket: str | None) -> StartPage:
        """What a start link is for, without using it (link previews and a person's first
        look must not burn the one-time link).

        Raises:
            NotFound: unknown, used or expired link.
        """
        flow = await self._flows.get_flow(start_hash=digest(ticket)) if ticket and len(ticket) <= 256 else None
        if flow is None or flow.status is not FlowStatus.PENDING or self._clock.now() >= flow.expires_at:
            raise NotFound("this sign-in link was already used or has expired; ask for a new one")
        client = ClientConfig.from_record(flow.client)
        return StartPage(
            requester=flow.requester, room=flow.room, provider=client.connector or client.authorization_endpoint,
            scopes=client.scopes, owner=flow.owner, usable_by=tuple(usable_by(flow)), expires_at=flow.expires_at,
            authorization_endpoint=client.authorization_endpoint,
        )

    async def open_start_link(self, ticket: str | None) -> BrowserStart:
        """Consume a start link once: issue the state, bind the browser, build the URL.

        Raises:
            NotFound: unknown, used or expired link.
        """
        with self._audit.observer.span("oauth.start", operation="oauth_start") as span:
            return await self._open_start_link(ticket, span)

    async def _open_start_link(self, ticket: str | None, span: Span) -> BrowserStart:
        if not ticket or len(ticket) > 256:
            raise NotFound("this sign-in link is not valid")
        now = self._clock.now()
        state, binding = new_secret(), new_secret()
        flow = await self._flows.get_flow(start_hash=digest(ticket))
        opened = None
        if flow is not None:
            opened = await self._flows.move_flow(
                flow.id, FlowStatus.STARTED, now=now, live=True,
                opened=(digest(state), digest(binding), now + self.policy.state_ttl),
            )
        if opened is None:
            raise NotFound("this sign-in link was already used or has expired; ask for a new one")
        client = ClientConfig.from_record(opened.client)
        span.set("room", opened.room)
        span.set("connector", connector_label(opened))
        sealed = await self._sealed(opened)
        url = self._provider.authorization_url(
            client, redirect_uri=opened.redirect_uri, state=state,
            code_challenge=self._provider.s256_challenge(sealed["verifier"]) if client.pkce else None,
        )
        await self._audit.record(opened.consenter, flow_address(opened), "oauth_start", "http", "ok")
        return BrowserStart(opened.id, url, binding, cookie_name(opened.id), self.policy.state_ttl)

    async def complete_callback(self, params: Mapping[str, str], cookies: Mapping[str, str]) -> CallbackResult:
        """Finish a flow from the provider's redirect to ``/oauth/callback``.

        Raises:
            NotFound: unknown or used state. Timeout: the state expired. PermissionDenied:
            no browser binding, or ``iss`` missing/mismatched. Rejected, OAuthError.
            Every refusal after the state was found ends the flow.
        """
        with self._audit.observer.span("oauth.callback", operation="oauth_callback") as span:
            return await self._complete_callback(params, cookies, span)

    async def _complete_callback(self, params: Mapping[str, str], cookies: Mapping[str, str], span: Span) -> CallbackResult:
        state = params.get("state")
        flow = await self._flows.get_flow(state_hash=digest(state)) if state else None
        if flow is None or flow.status is not FlowStatus.STARTED:
            raise NotFound("this sign-in response is unknown or was already used")
        span.set("room", flow.room)
        span.set("connector", connector_label(flow))
        client = ClientConfig.from_record(flow.client)
        if self._clock.now() >= flow.state_expires_at:
            await self._fail(flow, Timeout("the sign-in took longer than oauth.state_ttl"), FlowStatus.EXPIRED)
        if not same_secret(cookies.get(cookie_name(flow.id)), flow.binding_hash):
            await self._fail(flow, PermissionDenied("the sign-in finished in a browser that did not open its start link"))
        if not iss_ok(params.get("iss"), client.issuer, required=client.require_iss):
            await self._fail(flow, PermissionDenied("the sign-in response names another issuer (or none)"))
        error = params.get("error")
        if error:
            code = error if _ERROR_CODE.fullmatch(error) else "error"
            if code == "access_denied":
                await self._fail(flow, Rejected("the person declined at the provider"), FlowStatus.REJECTED)
            await self._fail(flow, OAuthError(f"the provider ended the sign-in with {code}", error=code))
        code_value = params.get("code")
        if not code_value:
            await self._fail(flow, OAuthError("the sign-in response has no code"))
        consumed = await self._flows.move_flow(
            flow.id, FlowStatus.EXCHANGING, now=self._clock.now(), state_hash=flow.state_hash, live=True
        )
        if consumed is None:
            raise NotFound("this sign-in response is unknown or was already used")
        stored = await self._exchange_to_the_end(consumed, code_value)
        return CallbackResult(
            client.connector or client.authorization_endpoint, stored.credential.subject, flow.room, flow.owner,
            cookie_name(flow.id),
        )

    # -- the MeshAgent way: the consenting app answers ----------------------------------------------

    async def provide_authorization(self, participant: Participant, request_id: str, code: str) -> None:
        """The consenting participant's app hands over the code it received.

        Raises:
            NotFound, PermissionDenied (another participant), InvalidState (answered,
            expired, or a start-link request), OAuthError.
        """
        flow = await self._answerable(participant, request_id, "provide")
        if flow.mode != MODE_APP:
            raise InvalidState("this request is answered through its start link, not with a code")
        if not isinstance(code, str) or not code or len(code) > 4096:
            raise InvalidRequest("'code' must be a non-empty string")
        consumed = await self._flows.move_flow(flow.id, FlowStatus.EXCHANGING, now=self._clock.now(), live=True)
        if consumed is None:
            raise InvalidState("this OAuth request was already answered or has expired")
        await self._exchange_to_the_end(consumed, code)

    async def reject_authorization(self, participant: Participant, request_id: str, error: str | None) -> None:
        flow = await self._answerable(participant, request_id, "reject")
        reason = (error or "declined")[:200]
        if not await self._end(flow, FlowStatus.REJECTED, "rejected", Rejected(f"the participant asked declined: {reason}")):
            raise InvalidState("this OAuth request was already answered or has expired")

    async def _answerable(self, participant: Participant, request_id: str, action: str) -> Flow:
        flow = await self._flows.get_flow(id=request_id) if isinstance(request_id, str) and request_id else None
        if flow is None or flow.room != participant.room:
            raise NotFound("no such OAuth request in this room")
        if flow.consenter_participant != participant.id:
            await self._audit.record(
                participant.principal, flow_address(flow), f"oauth_{action}", "oauth", "denied", "not the participant asked"
            )
            raise PermissionDenied("this OAuth request was addressed to another participant")
        return flow

    # -- completing a flow -----------------------------------------------------------------------

    async def _exchange_to_the_end(self, flow: Flow, code: str) -> StoredCredential:
        """Run the exchange so that the caller going away (a closed socket or browser
        cancels its request) cannot stop it halfway: the code is redeemed once, so the
        credential must be stored and the requester answered whatever happens to the caller."""
        task = asyncio.ensure_future(self._exchange(flow, code))
        self._exchanges.add(task)
        task.add_done_callback(self._exchanges.discard)
        return await asyncio.shield(task)

    async def _exchange(self, flow: Flow, code: str) -> StoredCredential:
        """Exchange the code once (never retried) and store the credential; the flow ends either way."""
        with self._audit.observer.span(
            "oauth.code_exchange", room=flow.room, operation="code_exchange", connector=connector_label(flow)
        ):
            return await self._exchange_once(flow, code)

    async def _exchange_once(self, flow: Flow, code: str) -> StoredCredential:
        client = ClientConfig.from_record(flow.client)
        try:
            sealed = await self._sealed(flow)
            auth = await self._clients.for_client(client, sealed.get("client_secret"))
            response = await self._provider.exchange_code(
                client.token_endpoint, auth, code=code, redirect_uri=flow.redirect_uri,
                code_verifier=sealed["verifier"] if client.pkce else None,
                **({"resource": client.resource} if client.resource else {}),
            )
            subject = await self._subject(client, response)
            replaced: list[StoredCredential] = []
            stored = await self._store(flow, client, auth, response, subject, replaced)
        except RoomsvcError as exc:
            await self._end(flow, FlowStatus.FAILED, exc.name, exc)
            raise
        except Exception as exc:
            # a bug or a surprise from a library: the flow must still end, never stay "exchanging"
            failure = OAuthError("the sign-in could not be completed; ask for a new link")
            log.exception("OAuth code exchange for flow in %s failed unexpectedly (%s)", flow.room, type(exc).__name__)
            await self._end(flow, FlowStatus.FAILED, "internal_error", failure)
            raise failure from None
        await self._replaced(replaced, stored)
        grant = TokenGrant.of(
            stored.credential, id=stored.address.id, owner=stored.address.owner, version=stored.version,
            delegated_to=stored.address.delegated_to,
        )
        await self._end(flow, FlowStatus.COMPLETED, "", result=grant)
        return stored

    async def _store(
        self, flow: Flow, client: ClientConfig, auth: ClientAuth, response: TokenResponse, subject: str,
        replaced: list[StoredCredential],
    ) -> StoredCredential:
        addr = flow_address(flow)
        if addr.owner != flow.consenter:
            # flows are created so; a row that says otherwise was not written by roomsvc
            raise PermissionDenied("an OAuth consent stores its credential only for the identity that consented")
        now = self._clock.now()
        for attempt in range(3):
            existing = await self._vault.load(addr)
            covers = {flow.requester} | ({flow.delegate_to} if flow.delegate_to else set())
            replaced.clear()
            if existing is not None:
                old = existing.credential
                # the same person consenting to the same account again: earlier consents still hold
                if (old.subject, old.client_id, old.consented_by) == (subject, client.client_id, flow.consenter):
                    covers |= set(old.covers)
                else:
                    replaced.append(existing)
            credential = OAuthCredential(
                access_token=response.access_token, refresh_token=response.refresh_token, token_type=response.token_type,
                expires_at=expiry(response, now, self.policy.assumed_token_lifetime),
                scopes=tuple(response.scope.split()) if response.scope else client.scopes, status=ACTIVE,
                connector=client.connector, issuer=client.issuer, client_id=client.client_id,
                token_endpoint=client.token_endpoint, revocation_endpoint=client.revocation_endpoint,
                token_endpoint_auth_method=auth.method, client_secret=None if client.connector else auth.secret,
                subject=subject, covers=tuple(sorted(covers)), consented_by=flow.consenter,
                allowed_hosts=client.allowed_hosts, header_format=client.header_format, created_at=now, refreshed_at=now,
                resource=client.resource,
            )
            try:
                return await self._vault.save(addr, credential, expected_version=existing.version if existing else 0)
            except Conflict:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _replaced(self, replaced: list[StoredCredential], new: StoredCredential) -> None:
        """Revoke the grant of a credential a new consent replaced (another account or client).
        The same account and client again is, at most providers, the same grant: revoking
        the old refresh token would end the new one too, so that one is kept."""
        for old in replaced:
            cred = old.credential
            if not cred.revocation_endpoint or cred.refresh_token in (None, new.credential.refresh_token):
                continue
            token, hint = (cred.refresh_token, "refresh_token") if cred.refresh_token else (cred.access_token, "access_token")
            try:
                auth = await self._clients.for_credential(cred)
                await self._provider.revoke(cred.revocation_endpoint, auth, token=token, token_type_hint=hint)
            except RoomsvcError as exc:
                await self._audit.record(SYSTEM_IDENTITY, old.address, "oauth_revoke", "oauth", "failed", exc.name)
                continue
            await self._audit.record(SYSTEM_IDENTITY, old.address, "oauth_revoke", "oauth", "ok", "replaced by a new consent")

    async def _subject(self, client: ClientConfig, response: TokenResponse) -> str:
        """The upstream account, to show people which one was connected."""
        if response.id_token:
            subject = self._provider.id_token_subject(response.id_token)
            if subject:
                return subject[:256]
        if client.userinfo_endpoint:
            try:
                info = await self._provider.userinfo(client.userinfo_endpoint, response.access_token)
            except RoomsvcError:
                return ""
            sub = info.get("email") or info.get("preferred_username") or info.get("login") or info.get("sub")
            return str(sub)[:256] if sub is not None else ""
        return ""

    async def _fail(self, flow: Flow, error: RoomsvcError, status: FlowStatus = FlowStatus.FAILED) -> NoReturn:
        """End the flow and raise ``error`` (the requester hears the same)."""
        await self._end(flow, status, error.name, error)
        raise error

    async def _end(
        self, flow: Flow, status: FlowStatus, reason: str, failure: RoomsvcError | None = None,
        result: TokenGrant | None = None,
    ) -> bool:
        moved = await self._flows.move_flow(flow.id, status, now=self._clock.now(), error=reason[:64])
        if moved is None:
            return False
        self._audit.observer.oauth_flow(connector_label(flow), _FLOW_EVENTS.get(status, status.value))
        waiter = self._waiters.get(flow.id)
        if waiter is not None and not waiter.future.done():
            if result is not None:
                waiter.future.set_result(result)
            else:
                waiter.future.set_exception(failure or Timeout("the OAuth request ended"))
        elif waiter is None:
            # the requester may wait on another node (the callback landed here): tell them
            self._rooms.announce_completion(flow.id)
        consenter = self._present(flow)
        if consenter is not None:
            self._rooms.notify(consenter, RequestEnded(flow.id, status.value))
        await self._audit.record(SYSTEM_IDENTITY, flow_address(flow), "oauth_flow", "oauth", status.value, reason)
        return True

    def _ended_elsewhere(self, flow_id: str) -> None:
        """Another node ended a flow: if its requester waits here, answer it from the database."""
        if flow_id not in self._waiters:
            return
        task = asyncio.ensure_future(self._answer_from_store(flow_id))
        self._remote_ends.add(task)
        task.add_done_callback(self._remote_ends.discard)

    async def _answer_from_store(self, flow_id: str) -> None:
        waiter = self._waiters.get(flow_id)
        flow = await self._flows.get_flow(id=flow_id)
        if waiter is None or waiter.future.done() or flow is None or not flow.status.terminal:
            return
        if flow.status is FlowStatus.COMPLETED:
            stored = await self._vault.load(flow_address(flow))
            if stored is None:
                waiter.future.set_exception(NotFound("the credential of this OAuth request is gone"))
                return
            waiter.future.set_result(TokenGrant.of(
                stored.credential, id=stored.address.id, owner=stored.address.owner, version=stored.version,
                delegated_to=stored.address.delegated_to,
            ))
        elif flow.status is FlowStatus.REJECTED:
            waiter.future.set_exception(Rejected("the person declined"))
        elif flow.status is FlowStatus.EXPIRED:
            waiter.future.set_exception(Timeout("the OAuth request expired"))
        else:
            code = flow.error if _ERROR_CODE.fullmatch(flow.error or "") else "error"
            waiter.future.set_exception(OAuthError(f"the sign-in failed on another node ({code})", error=code))

    def _present(self, flow: Flow) -> Participant | None:
        try:
            return self._rooms.find(RoomName(flow.room), flow.consenter_participant)
        except NotFound:
            return None

    async def _sealed(self, flow: Flow) -> dict[str, Any]:
        blob = await self._flows.flow_secrets(flow.id)
        if blob is None:
            raise InvalidState("this OAuth request has no PKCE verifier any more")
        sealed: dict[str, Any] = json.loads(self._cipher.decrypt(blob, verifier_aad(flow.id)))
        return sealed


#: how a flow's end is counted (``roomsvc_oauth_flows_total{event}``): a flow past its deadline timed out
_FLOW_EVENTS = {FlowStatus.EXPIRED: "timed_out"}


def connector_label(flow: Flow) -> str:
    """The flow's connector as a metric label and span attribute: a configured name, or
    ``inline`` for a client the request carried (its endpoints are not a bounded label)."""
    return str(flow.client.get("connector") or "inline")[:64]


def flow_address(flow: Flow) -> Address:
    """Where the flow's credential is stored: the consenting identity's, delegated to ``delegate_to``."""
    return Address(
        RoomName(flow.room), Identity(flow.owner), SecretId(flow.credential_id),
        Identity(flow.delegate_to) if flow.delegate_to else None,
    )


def usable_by(flow: Flow) -> list[str]:
    """Who may use the credential a flow stores: its owner, the requester and the delegate."""
    return sorted({flow.owner, flow.requester} | ({flow.delegate_to} if flow.delegate_to else set()))
