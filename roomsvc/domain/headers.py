"""Resolve ``HEADER:FORMAT`` specs into header values from the caller's room secrets.

Each placeholder names a secret of the caller's identity (or of ``for_identity``, with the
admin grant), looked up by id, then by name; ``{owner/id}`` names a secret that ``owner``
delegated to the caller. Secrets others delegate never shadow the caller's own.
OAuth credentials resolve to a fresh access token through the :class:`AccessTokens` port
(refreshed first when near expiry). Every use is audited by the secret service with the
toolkit's name in the channel. Every spec (and the destination URL) is parsed before any
secret is read, so a hostile spec fails before anything happens.

The destination is where the caller will send the headers. A header whose OAuth credentials
carry ``allowed_hosts`` (from their connector) is refused unless the destination's host is
one of them (rules in :mod:`roomsvc.domain.destinations`); a use-only token must always name
a destination. A refusal is audited and no value is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from roomsvc.domain.audit import Auditor
from roomsvc.domain.destinations import Destination, host_allowed, parse_destination
from roomsvc.domain.header_spec import HeaderSpec, HeaderSpecError, parse_header_spec
from roomsvc.domain.observe import NOOP
from roomsvc.domain.ports import SecretRecord
from roomsvc.domain.principal import Principal
from roomsvc.domain.ratelimit import SECRET_OPS, RateLimiter
from roomsvc.domain.secrets import KIND_OAUTH, OAuthToken, SecretService
from roomsvc.errors import InvalidRequest, NotFound, PermissionDenied, RoomsvcError
from roomsvc.ids import SecretBytes

MAX_SPECS = 16


@dataclass(frozen=True)
class FreshToken:
    access_token: str
    expires_at: float | None
    allowed_hosts: tuple[str, ...] | None


class AccessTokens(Protocol):
    async def fresh_access_token(self, caller: Principal, record: SecretRecord, *, channel: str) -> FreshToken:
        """The current access token of an OAuth credential, refreshed when near expiry."""


@dataclass(frozen=True)
class ResolvedHeader:
    name: str
    value: str
    #: earliest expiry among the OAuth credentials used (None: no expiry known)
    expires_at: float | None
    #: hosts the credentials may be sent to (None: no restriction from a connector)
    allowed_hosts: tuple[str, ...] | None
    secret_ids: tuple[str, ...]

    def __repr__(self) -> str:
        return f"ResolvedHeader(name={self.name!r}, value=<hidden>, secrets={self.secret_ids!r})"


@dataclass(frozen=True)
class _Value:
    text: str
    record: SecretRecord
    expires_at: float | None = None
    allowed_hosts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Place:
    """Where a refusal happened, for the audit line."""

    room: str
    owner: str
    id: str


class HeaderService:
    def __init__(
        self, *, secrets: SecretService, tokens: AccessTokens, limiter: RateLimiter | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self._secrets = secrets
        self._limiter = limiter or RateLimiter.off()
        self._tokens = tokens
        #: records destination refusals (None only in unit tests; the refusal happens anyway)
        self._audit = auditor
        self._observer = auditor.observer if auditor is not None else NOOP

    async def resolve(
        self,
        caller: Principal,
        room: str,
        specs: list[str],
        *,
        for_identity: str | None = None,
        toolkit: str | None = None,
        channel: str = "headers",
        destination: str | None = None,
    ) -> list[ResolvedHeader]:
        """Render every spec for the caller, to be sent to ``destination`` (a URL).

        Raises:
            HeaderSpecError: a spec is malformed or a value cannot go into a header.
            InvalidRequest: the destination is not a plain absolute http(s) URL.
            NotFound: a placeholder names no secret the caller may use.
            PermissionDenied: a credential may not go to the destination (or none is given
                while it is restricted, or the token is use-only); audited.
        """
        with self._observer.span("headers.resolve", room=room, operation="resolve_headers"):
            try:
                resolved = await self._resolve(
                    caller, room, specs, for_identity=for_identity, toolkit=toolkit, channel=channel, destination=destination
                )
            except RoomsvcError as exc:
                self._observer.header_resolution(exc.name)
                raise
            self._observer.header_resolution("ok")
            return resolved

    async def _resolve(
        self, caller: Principal, room: str, specs: list[str], *, for_identity: str | None, toolkit: str | None,
        channel: str, destination: str | None,
    ) -> list[ResolvedHeader]:
        self._limiter.check(SECRET_OPS, caller.room, caller.identity)
        if not isinstance(specs, list) or not specs:
            raise InvalidRequest("give at least one header spec HEADER:FORMAT")
        if len(specs) > MAX_SPECS:
            raise InvalidRequest(f"at most {MAX_SPECS} header specs")
        parsed: list[HeaderSpec] = [parse_header_spec(s) for s in specs]
        names = [p.name.lower() for p in parsed]
        if len(set(names)) != len(names):
            raise HeaderSpecError("each header may be given once")
        audit_channel = f"{channel}:{toolkit}"[:64] if toolkit else channel
        target = parse_destination(destination) if destination is not None else None
        if target is None and caller.use_only:
            await self._deny(caller, room, for_identity, ["*"], audit_channel, "use-only token without destination")
            raise PermissionDenied("a use-only token must give the destination URL the headers are for")
        values: dict[str, _Value] = {}
        for spec in parsed:
            for key in spec.keys:
                if key not in values:
                    values[key] = await self._lookup(caller, room, key, for_identity, audit_channel)
        out = []
        for spec in parsed:
            used = [values[k] for k in spec.keys]
            expiries = [v.expires_at for v in used if v.expires_at is not None]
            hosts = [set(v.allowed_hosts) for v in used if v.allowed_hosts is not None]
            out.append(
                ResolvedHeader(
                    name=spec.name,
                    value=spec.render({k: values[k].text for k in spec.keys}),
                    expires_at=min(expiries) if expiries else None,
                    allowed_hosts=tuple(sorted(set.intersection(*hosts))) if hosts else None,
                    secret_ids=tuple(v.record.id for v in used),
                )
            )
        for header in out:
            await self._check_destination(caller, room, for_identity, header, target, audit_channel)
        return out

    async def _check_destination(
        self, caller: Principal, room: str, for_identity: str | None, header: ResolvedHeader,
        target: Destination | None, channel: str,
    ) -> None:
        """Refuse a header whose credentials may not go to ``target`` (issue 10 §6)."""
        if header.allowed_hosts is None:
            return  # no connector restricts these secrets
        if target is None:
            await self._deny(caller, room, for_identity, header.secret_ids, channel, "no destination for a host-restricted credential")
            raise PermissionDenied(
                f"the credential for header {header.name} may only be sent to its allowed hosts; give the destination URL"
            )
        if not host_allowed(target, header.allowed_hosts):
            await self._deny(caller, room, for_identity, header.secret_ids, channel, f"destination host {target.host} not allowed")
            raise PermissionDenied(f"the credential for header {header.name} may not be sent to {target.host}")

    async def _deny(
        self, caller: Principal, room: str, for_identity: str | None, secret_ids: Sequence[str],
        channel: str, detail: str,
    ) -> None:
        if self._audit is None:
            return
        owner = for_identity or caller.identity
        for secret_id in secret_ids:
            await self._audit.record(caller, _Place(room, owner, secret_id), "use", channel, "denied", detail)

    async def _lookup(self, caller: Principal, room: str, key: str, for_identity: str | None, channel: str) -> _Value:
        """``{key}``: the caller's own secret by id, else by name. ``{owner/key}``: the secret
        ``key`` that ``owner`` delegated to the caller. What others delegate never changes
        what a plain ``{key}`` finds."""
        owner, _, secret = key.rpartition("/")
        if owner:
            record, value = await self._secrets.get(
                caller, room, secret_id=secret, delegated_to=caller.identity if not for_identity else for_identity,
                for_identity=owner, channel=channel, action="use",
            )
            return await self._value(caller, key, record, value, channel)
        try:
            record, value = await self._secrets.get(
                caller, room, secret_id=secret, for_identity=for_identity, channel=channel, action="use"
            )
            return await self._value(caller, key, record, value, channel)
        except NotFound:
            pass
        named = [
            r for r in await self._secrets.list(caller, room, for_identity=for_identity, channel=channel) if r.name == secret
        ]
        # a name held by several of the owner's secrets: the one not delegated away wins
        named.sort(key=lambda r: (r.delegated_to is not None, r.id))
        if named:
            found, value = await self._secrets.get(
                caller, room, secret_id=named[0].id, delegated_to=named[0].delegated_to,
                for_identity=for_identity, channel=channel, action="use",
            )
            return await self._value(caller, key, found, value, channel)
        raise NotFound(f"secret for placeholder {{{key}}} not found (use a secret id or name, or owner/id)")

    async def _value(self, caller: Principal, key: str, record: SecretRecord, value: SecretBytes, channel: str) -> _Value:
        if record.kind == KIND_OAUTH:
            if isinstance(value, OAuthToken):
                # the secret service's read already refreshed it when due and gives the
                # credential's expiry and hosts with the token: no second read (issue 12)
                token, expires_at, hosts = _text(value, key), value.expires_at, value.allowed_hosts
            else:
                fresh = await self._tokens.fresh_access_token(caller, record, channel=channel)
                token, expires_at, hosts = fresh.access_token, fresh.expires_at, fresh.allowed_hosts
            return _Value(token, record, expires_at, hosts)
        return _Value(_text(value, key), record)


def _text(value: SecretBytes, key: str) -> str:
    try:
        return value.reveal().decode("utf-8")
    except UnicodeDecodeError:
        raise HeaderSpecError(f"the secret for placeholder {{{key}}} is not UTF-8 text") from None
