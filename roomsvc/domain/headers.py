"""Resolve ``HEADER:FORMAT`` specs into header values from the caller's room secrets.

Each placeholder names a secret of the caller's identity (or of ``for_identity``, with the
admin grant), looked up by id, then by name; ``{owner/id}`` names a secret that ``owner``
delegated to the caller. Secrets others delegate never shadow the caller's own.
OAuth credentials resolve to a fresh access token through the :class:`AccessTokens` port
(refreshed first when near expiry). Every use is audited by the secret service with the
toolkit's name in the channel. Every spec is parsed before any secret is read, so a
hostile spec fails before anything happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from roomsvc.domain.header_spec import HeaderSpec, HeaderSpecError, parse_header_spec
from roomsvc.domain.ports import SecretRecord
from roomsvc.domain.principal import Principal
from roomsvc.domain.ratelimit import SECRET_OPS, RateLimiter
from roomsvc.domain.secrets import KIND_OAUTH, SecretService
from roomsvc.errors import InvalidRequest, NotFound
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


class HeaderService:
    def __init__(self, *, secrets: SecretService, tokens: AccessTokens | None = None, limiter: RateLimiter | None = None) -> None:
        self._secrets = secrets
        self._limiter = limiter or RateLimiter.off()
        self._tokens = tokens

    def set_access_tokens(self, tokens: AccessTokens) -> None:
        self._tokens = tokens

    async def resolve(
        self,
        caller: Principal,
        room: str,
        specs: list[str],
        *,
        for_identity: str | None = None,
        toolkit: str | None = None,
        channel: str = "headers",
    ) -> list[ResolvedHeader]:
        """Render every spec for the caller.

        Raises:
            HeaderSpecError: a spec is malformed or a value cannot go into a header.
            NotFound: a placeholder names no secret the caller may use.
        """
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
        return out

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
        if record.kind == KIND_OAUTH and self._tokens is not None:
            fresh = await self._tokens.fresh_access_token(caller, record, channel=channel)
            return _Value(fresh.access_token, record, fresh.expires_at, fresh.allowed_hosts)
        try:
            text = value.reveal().decode("utf-8")
        except UnicodeDecodeError:
            raise HeaderSpecError(f"the secret for placeholder {{{key}}} is not UTF-8 text") from None
        return _Value(text, record)
