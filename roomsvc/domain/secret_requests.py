"""Asking another participant for a plain secret (MeshAgent's request_secret).

The requester names a ``url`` (an opaque key such as ``secret://example`` or a git
remote) and a ``type``; the participant asked gets a
:class:`~roomsvc.domain.events.SecretRequested` notice
and answers with :meth:`SecretRequestService.provide` or :meth:`~SecretRequestService.reject`.
The value is stored as a room secret of the requester (delegated to ``delegate_to`` when
given: the same rules as any write by the requester, never in another identity's
namespace) with id ``req:`` + a hash of (url, type), and returned to the requester. :meth:`~SecretRequestService.delete_requested` removes it.

Requests wait in memory on the node holding the requester's connection: they end when
answered, when the timeout passes, or when either participant leaves. With several nodes
(issue 15) the participant asked may be on another node: the notice goes there over the
room bus, that node keeps what it needs to check the answer, and sends the value back
sealed under the vault's active key (the nodes share the vault's keys; the bus never sees
the value in the clear).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass

from roomsvc.domain.audit import Auditor
from roomsvc.domain.cluster import SecretAnswered
from roomsvc.domain.events import RequestEnded, SecretRequested
from roomsvc.domain.policy import Action
from roomsvc.domain.policy import Address as PolicyAddress
from roomsvc.domain.ports import Cipher, SecretRecord
from roomsvc.domain.principal import Principal
from roomsvc.domain.ratelimit import FLOWS, SECRET_OPS, RateLimiter
from roomsvc.domain.rooms import Participant, RoomService
from roomsvc.domain.secrets import DEFAULT_TYPE, Address, SecretService
from roomsvc.errors import InvalidRequest, NotFound, Overloaded, PermissionDenied, Rejected, RoomsvcError, Timeout
from roomsvc.ids import SecretBytes, SecretId, parse_identity

#: requests from other nodes remembered at most (the oldest are forgotten first)
MAX_REMOTE_ASKS = 10000

MAX_URL = 2048
MAX_TYPE = 256


def requested_secret_id(url: str, type: str) -> str:
    """``req:`` + the first 40 hex digits of SHA-256 over url and type."""
    return "req:" + hashlib.sha256(f"{url}\n{type}".encode()).hexdigest()[:40]


@dataclass
class _Pending:
    id: str
    requester: Participant
    target: Participant
    url: str
    type: str
    address: Address
    future: asyncio.Future[SecretBytes]


@dataclass
class _RemoteAsk:
    """A request made on another node to a participant of this one."""

    target: Participant
    notice: SecretRequested
    deadline: float


@dataclass(frozen=True)
class ProvidedSecret:
    record: SecretRecord
    value: SecretBytes


class SecretRequestService:
    def __init__(
        self,
        *,
        rooms: RoomService,
        secrets: SecretService,
        auditor: Auditor,
        default_timeout: float = 300.0,
        max_timeout: float = 3600.0,
        max_pending_per_identity: int = 8,
        min_timeout: float = 0.0,
        limiter: RateLimiter | None = None,
        cipher: Cipher | None = None,
    ) -> None:
        self._limiter = limiter or RateLimiter.off()
        self._cipher = cipher
        self._remote_asks: dict[str, _RemoteAsk] = {}
        self._min_timeout = min_timeout
        self._rooms = rooms
        self._secrets = secrets
        self._audit = auditor
        self._default_timeout = default_timeout
        self._max_timeout = max_timeout
        self._max_pending = max_pending_per_identity
        self._pending: dict[str, _Pending] = {}
        rooms.on_leave(self._left)
        if cipher is not None:
            rooms.on_secret_request(self._asked_from_elsewhere)
            rooms.on_secret_answer(self._answered_elsewhere)

    async def request(
        self,
        requester: Participant,
        *,
        url: str,
        type: str | None,
        from_participant_id: str,
        timeout: float | None = None,
        delegate_to: str | None = None,
    ) -> ProvidedSecret:
        """Ask ``from_participant_id`` for the secret at ``url`` and wait for the answer.

        Raises:
            NotFound: no such participant. Timeout: no answer in time. Rejected: declined.
        """
        self._limiter.check(FLOWS, requester.room, requester.identity)
        url_, type_ = _text(url, "url", MAX_URL), _text(type or DEFAULT_TYPE, "type", MAX_TYPE)
        delegate = parse_identity(delegate_to) if delegate_to else None
        if delegate == requester.identity:
            delegate = None  # "for me" is what a request without delegate_to means
        addr = Address(requester.room, requester.identity, SecretId(requested_secret_id(url_, type_)), delegate)
        await self._secrets.check(requester.principal, Action.REQUEST, addr, "request")
        wait = self._timeout(timeout)
        target = self._rooms.find(requester.room, from_participant_id)
        if sum(1 for p in self._pending.values() if p.requester.identity == requester.identity) >= self._max_pending:
            raise Overloaded(f"{requester.identity!r} already waits for {self._max_pending} secret requests")
        pending = _Pending(
            id=_new_id(), requester=requester, target=target, url=url_, type=type_, address=addr,
            future=asyncio.get_running_loop().create_future(),
        )
        self._pending[pending.id] = pending
        try:
            self._rooms.notify(target, SecretRequested(
                request_id=pending.id, url=url_, type=type_, participant_id=target.id, timeout=wait,
                delegate_to=delegate, requester=requester.info(),
                # who will hold the value, and who may use it
                owner=addr.owner, usable_by=tuple(sorted({addr.owner} | ({delegate} if delegate else set()))),
            ))
            try:
                value = await asyncio.wait_for(pending.future, wait)
            except asyncio.TimeoutError:
                self._ended(pending, "timeout")
                raise Timeout(f"participant {target.id!r} did not answer the secret request within {wait:g} s") from None
        finally:
            self._pending.pop(pending.id, None)
        # stored under the same rules as any write by the requester: its own namespace
        record = await self._secrets.set(
            requester.principal, requester.room, secret_id=addr.id, value=value.reveal(),
            type=type_, name=url_[:256], delegated_to=addr.delegated_to, channel="request",
        )
        await self._audit.record(requester.principal, record, "request_secret", "request", "ok", f"from {target.identity}")
        return ProvidedSecret(record, value)

    def provide(self, participant: Participant, request_id: str, value: bytes) -> None:
        """Answer a request addressed to ``participant``.

        Raises:
            NotFound: no such pending request. PermissionDenied: addressed to someone else.
        """
        if len(value) > self._secrets.max_value_size:
            raise InvalidRequest(f"the secret is larger than {self._secrets.max_value_size} bytes")
        remote = self._remote_answerable(participant, request_id)
        if remote is not None:
            assert self._cipher is not None
            sealed = self._cipher.encrypt(bytes(value), _answer_aad(request_id))
            self._rooms.announce_secret_answer(SecretAnswered(self._rooms.node_id, request_id, "provided", sealed))
            return
        pending = self._answerable(participant, request_id)
        pending.future.set_result(SecretBytes(bytes(value)))
        self._ended(pending, "provided")

    def reject(self, participant: Participant, request_id: str, error: str | None) -> None:
        if self._remote_answerable(participant, request_id) is not None:
            reason = (error or "declined")[:200]
            self._rooms.announce_secret_answer(SecretAnswered(self._rooms.node_id, request_id, "rejected", reason=reason))
            return
        pending = self._answerable(participant, request_id)
        pending.future.set_exception(Rejected(f"the participant asked declined: {(error or 'declined')[:200]}"))
        self._ended(pending, "rejected")

    async def delete_requested(
        self, caller: Principal, room: str, *, url: str, type: str | None, delegated_to: str | None = None
    ) -> SecretRecord:
        """Delete a secret the caller obtained with :meth:`request` (``delegated_to`` as it
        was asked for).

        Raises:
            NotFound, PermissionDenied.
        """
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        secret_id = requested_secret_id(_text(url, "url", MAX_URL), _text(type or DEFAULT_TYPE, "type", MAX_TYPE))
        return await self._secrets.delete(caller, room, secret_id=secret_id, delegated_to=delegated_to, channel="request")

    # -- internals --------------------------------------------------------------------------

    def _answerable(self, participant: Participant, request_id: str) -> _Pending:
        pending = self._pending.get(request_id) if isinstance(request_id, str) else None
        if pending is None or pending.requester.room != participant.room or pending.future.done():
            raise NotFound("no pending secret request with that id")
        addr = pending.address
        decision = self._secrets.decide(participant.principal, Action.ANSWER, PolicyAddress(
            addr.room, addr.owner, addr.id, addr.delegated_to,
            asked_identity=pending.target.identity, asked_participant=pending.target.id,
        ), participant=participant.id)
        if not decision.allowed:
            raise PermissionDenied(decision.reason)
        return pending

    # -- between nodes (issue 15) ----------------------------------------------------------

    def _asked_from_elsewhere(self, target: Participant, notice: SecretRequested) -> None:
        now = time.monotonic()
        for request_id, ask in list(self._remote_asks.items()):
            if ask.deadline <= now:
                del self._remote_asks[request_id]
        while len(self._remote_asks) >= MAX_REMOTE_ASKS:
            del self._remote_asks[next(iter(self._remote_asks))]
        self._remote_asks[notice.request_id] = _RemoteAsk(target, notice, now + notice.timeout)

    def _remote_answerable(self, participant: Participant, request_id: str) -> _RemoteAsk | None:
        """The request from another node addressed to ``participant``, checked as a local one is.

        Raises:
            PermissionDenied: the policy refuses this participant's answer.
        """
        ask = self._remote_asks.get(request_id) if isinstance(request_id, str) else None
        if ask is None or ask.deadline <= time.monotonic() or ask.target is not participant or self._cipher is None:
            return None
        notice = ask.notice
        decision = self._secrets.decide(participant.principal, Action.ANSWER, PolicyAddress(
            participant.room, notice.owner, SecretId(requested_secret_id(notice.url, notice.type)), notice.delegate_to,
            asked_identity=participant.identity, asked_participant=participant.id,
        ), participant=participant.id)
        if not decision.allowed:
            raise PermissionDenied(decision.reason)
        del self._remote_asks[request_id]
        return ask

    def _answered_elsewhere(self, answer: SecretAnswered) -> None:
        pending = self._pending.get(answer.request_id)
        if pending is None or pending.future.done() or not self._rooms.is_remote(pending.target):
            return
        if answer.outcome == "provided" and answer.sealed is not None and self._cipher is not None:
            try:
                value = self._cipher.decrypt(answer.sealed, _answer_aad(answer.request_id))
            except RoomsvcError as exc:
                pending.future.set_exception(exc)
                return
            if len(value) > self._secrets.max_value_size:
                return
            pending.future.set_result(SecretBytes(value))
            self._ended(pending, "provided")
        elif answer.outcome == "rejected":
            pending.future.set_exception(Rejected(f"the participant asked declined: {answer.reason[:200]}"))
            self._ended(pending, "rejected")

    def _ended(self, pending: _Pending, outcome: str) -> None:
        if pending.target.id in {p.id for p in self._rooms.participants(pending.target.room)}:
            self._rooms.notify(pending.target, RequestEnded(pending.id, outcome))

    def _left(self, participant: Participant) -> None:
        for pending in list(self._pending.values()):
            if pending.target is participant and not pending.future.done():
                pending.future.set_exception(NotFound("the participant asked left the room"))

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self._default_timeout
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not max(self._min_timeout, 1e-9) <= timeout <= self._max_timeout:
            raise InvalidRequest(f"'timeout' must be a number of seconds from {self._min_timeout:g} to {self._max_timeout:g} (oauth.min_flow_timeout, oauth.max_flow_timeout)")
        return float(timeout)


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise InvalidRequest(f"'{what}' must be printable text of 1-{limit} characters")
    return value


def _answer_aad(request_id: str) -> bytes:
    """The place a sealed answer is bound to: this request only."""
    return f"roomsvc:secret-request-answer:{request_id}".encode()


def _new_id() -> str:
    return secrets.token_urlsafe(18)
