"""Asking another participant for a plain secret (MeshAgent's request_secret).

The requester names a ``url`` (an opaque key such as ``secret://example`` or a git
remote) and a ``type``; the participant asked gets a ``secrets.request_secret`` notice
and answers with :meth:`SecretRequestService.provide` or :meth:`~SecretRequestService.reject`.
The value is stored as a room secret of the requester (or of ``delegate_to``) with id
``req:`` + a hash of (url, type), so asking again is not needed, and returned to the
requester. :meth:`~SecretRequestService.delete_requested` removes it.

Requests wait in memory on the node holding the requester's connection: they end when
answered, when the timeout passes, or when either participant leaves.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from types import MappingProxyType

from roomsvc.domain.audit import Auditor
from roomsvc.domain.events import Notice
from roomsvc.domain.ports import SecretRecord
from roomsvc.domain.principal import Principal
from roomsvc.domain.ratelimit import FLOWS, SECRET_OPS, RateLimiter
from roomsvc.domain.rooms import Participant, RoomService
from roomsvc.domain.secrets import DEFAULT_TYPE, SecretService
from roomsvc.errors import InvalidRequest, NotFound, Overloaded, PermissionDenied, Rejected, Timeout
from roomsvc.ids import Identity, SecretBytes, parse_identity

NOTICE_REQUEST = "secrets.request_secret"
NOTICE_ENDED = "secrets.request_ended"
SYSTEM_IDENTITY = Identity("roomsvc:requests")
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
    owner: Identity
    future: asyncio.Future[SecretBytes]


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
    ) -> None:
        self._limiter = limiter or RateLimiter.off()
        self._min_timeout = min_timeout
        self._rooms = rooms
        self._secrets = secrets
        self._audit = auditor
        self._default_timeout = default_timeout
        self._max_timeout = max_timeout
        self._max_pending = max_pending_per_identity
        self._pending: dict[str, _Pending] = {}
        rooms.on_leave(self._left)

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
        requester.principal.require_room(requester.room)
        requester.principal.require_api("secrets")
        url_, type_ = _text(url, "url", MAX_URL), _text(type or DEFAULT_TYPE, "type", MAX_TYPE)
        wait = self._timeout(timeout)
        target = self._rooms.find(requester.room, from_participant_id)
        owner = parse_identity(delegate_to) if delegate_to else requester.identity
        if sum(1 for p in self._pending.values() if p.requester.identity == requester.identity) >= self._max_pending:
            raise Overloaded(f"{requester.identity!r} already waits for {self._max_pending} secret requests")
        pending = _Pending(
            id=_new_id(), requester=requester, target=target, url=url_, type=type_, owner=owner,
            future=asyncio.get_running_loop().create_future(),
        )
        self._pending[pending.id] = pending
        try:
            self._rooms.notify(target, Notice(NOTICE_REQUEST, {
                "request_id": pending.id,
                "request": {"url": url_, "type": type_, "participant_id": target.id, "timeout": wait, "delegate_to": delegate_to},
                "from": requester.info().as_dict(),
            }))
            try:
                value = await asyncio.wait_for(pending.future, wait)
            except asyncio.TimeoutError:
                self._ended(pending, "timeout")
                raise Timeout(f"participant {target.id!r} did not answer the secret request within {wait:g} s") from None
        finally:
            self._pending.pop(pending.id, None)
        record = await self._secrets.set(
            _system(requester), requester.room, secret_id=requested_secret_id(url_, type_), value=value.reveal(),
            type=type_, name=url_[:256], for_identity=owner, channel="request",
        )
        await self._audit.record(requester.principal, record, "request_secret", "request", "ok", f"from {target.identity}")
        return ProvidedSecret(record, value)

    def provide(self, participant: Participant, request_id: str, value: bytes) -> None:
        """Answer a request addressed to ``participant``.

        Raises:
            NotFound: no such pending request. PermissionDenied: addressed to someone else.
        """
        pending = self._answerable(participant, request_id)
        if len(value) > self._secrets.max_value_size:
            raise InvalidRequest(f"the secret is larger than {self._secrets.max_value_size} bytes")
        pending.future.set_result(SecretBytes(bytes(value)))
        self._ended(pending, "provided")

    def reject(self, participant: Participant, request_id: str, error: str | None) -> None:
        pending = self._answerable(participant, request_id)
        pending.future.set_exception(Rejected(f"the participant asked declined: {(error or 'declined')[:200]}"))
        self._ended(pending, "rejected")

    async def delete_requested(
        self, caller: Principal, room: str, *, url: str, type: str | None, delegated_to: str | None = None
    ) -> SecretRecord:
        """Delete a secret obtained with :meth:`request` (stored for ``delegated_to``
        needs that identity or the admin grant).

        Raises:
            NotFound, PermissionDenied.
        """
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        secret_id = requested_secret_id(_text(url, "url", MAX_URL), _text(type or DEFAULT_TYPE, "type", MAX_TYPE))
        return await self._secrets.delete(caller, room, secret_id=secret_id, for_identity=delegated_to, channel="request")

    # -- internals --------------------------------------------------------------------------

    def _answerable(self, participant: Participant, request_id: str) -> _Pending:
        pending = self._pending.get(request_id) if isinstance(request_id, str) else None
        if pending is None or pending.requester.room != participant.room or pending.future.done():
            raise NotFound("no pending secret request with that id")
        if pending.target is not participant:
            raise PermissionDenied("this secret request was addressed to another participant")
        return pending

    def _ended(self, pending: _Pending, outcome: str) -> None:
        if pending.target.id in {p.id for p in self._rooms.participants(pending.target.room)}:
            self._rooms.notify(pending.target, Notice(NOTICE_ENDED, {"request_id": pending.id, "outcome": outcome}))

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


def _new_id() -> str:
    return secrets.token_urlsafe(18)


def _system(requester: Participant) -> Principal:
    return Principal(
        identity=SYSTEM_IDENTITY, room=requester.room, role="agent", api=MappingProxyType({"secrets": {}, "admin": {}})
    )

