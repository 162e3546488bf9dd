"""What reaches a running service: its environment, resolved from a spec at each start.

* a literal ``value`` as written;
* a room ``secret: {identity, id}``, read *as that identity* in the service's room (the
  operator who stored the spec vouches for the service acting for it), through the
  :class:`~roomsvc.domain.secrets.SecretService` and its policy, audited with the
  channel ``service:<name>``;
* every KEY=VALUE pair of the project keys bags in ``container.secrets``;
* a ``token`` entry: a participant token for the room, minted for the identity with
  the role and API sections the entry grants, valid ``token_ttl`` seconds (the
  supervisor restarts the service with a fresh one before it expires).

The image pull secret is resolved separately (:meth:`EnvironmentResolver.pull_credentials`)
and handed to the runner's pull only: it is never part of :class:`ResolvedEnvironment`.
A failure is a typed error naming the entry and the secret id, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.principal import Principal
from roomsvc.domain.project_secrets import ProjectSecretService, PullCredentials
from roomsvc.domain.secrets import SecretService
from roomsvc.domain.service_spec import ServiceSpec
from roomsvc.errors import DecryptionFailed, InvalidRequest, NotFound, OAuthError, PermissionDenied, ReauthRequired
from roomsvc.ids import Identity, RoomName

#: mints a signed participant token: (identity, room, role, api sections, ttl) -> token
TokenMinter = Callable[[str, str, str, Mapping[str, Any], int], str]


class SecretEnv(dict[str, str]):
    """A resolved environment: a dict whose repr and str show the names only."""

    def __repr__(self) -> str:
        return f"SecretEnv(names={sorted(self)}, <values hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class ResolvedEnvironment:
    env: SecretEnv
    #: the earliest expiry of a minted token (epoch seconds), or None without token entries
    expires_at: float | None = None
    #: values long enough to be recognised in the service's output, to mask them in its logs
    sensitive: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class _Place:
    room: str
    owner: str | None
    id: str


class EnvironmentResolver:
    def __init__(
        self, *, secrets: SecretService, project: ProjectSecretService, mint: TokenMinter, auditor: Auditor, clock: Clock,
        token_ttl: int,
    ) -> None:
        self._secrets = secrets
        self._project = project
        self._mint = mint
        self._audit = auditor
        self._clock = clock
        self._token_ttl = token_ttl

    async def resolve(self, room: str, spec: ServiceSpec) -> ResolvedEnvironment:
        """The service's whole environment (nothing of the server's own).

        Raises:
            NotFound: a room secret or a keys bag is missing (the message names the entry and id).
            PermissionDenied: the policy refused a read. InvalidRequest: two sources set one variable.
            DecryptionFailed: a stored value does not open.
        """
        channel = f"service:{spec.name}"
        env = SecretEnv()
        sensitive: list[str] = []
        expires: float | None = None
        for bag_id in spec.container.secrets:
            try:
                bag = await self._project.resolve_keys(bag_id, service=spec.name)
            except NotFound:
                raise NotFound(f"container.secrets: project keys secret {bag_id!r} not found") from None
            for key, value in bag.items():
                if key in env:
                    raise InvalidRequest(f"container.secrets: variable {key!r} comes from two keys secrets")
                env[key] = value
                sensitive.append(value)
        for index, entry in enumerate(spec.container.environment):
            where = f"container.environment[{index}] ({entry.name})"
            if entry.name in env:
                raise InvalidRequest(f"{where}: the variable is also set by a keys secret in container.secrets")
            if entry.value is not None:
                env[entry.name] = entry.value
            elif entry.secret is not None:
                value = await self._room_secret(room, entry.secret.identity, entry.secret.id, channel, where)
                env[entry.name] = value
                sensitive.append(value)
            elif entry.token is not None:
                token, exp = await self._token(room, entry.token.identity, entry.token.role, entry.token.api, channel)
                env[entry.name] = token
                sensitive.append(token)
                expires = exp if expires is None else min(expires, exp)
        return ResolvedEnvironment(env=env, expires_at=expires, sensitive=tuple(s for s in sensitive if len(s) >= 4))

    async def pull_credentials(self, spec: ServiceSpec) -> PullCredentials | None:
        """The registry credentials for ``container.pull_secret`` (for the pull only).

        Raises:
            NotFound: naming ``container.pull_secret`` and the id.
        """
        pull_id = spec.container.pull_secret
        if pull_id is None:
            return None
        try:
            return await self._project.resolve_pull(pull_id, service=spec.name)
        except NotFound:
            raise NotFound(f"container.pull_secret: image pull secret {pull_id!r} not found") from None

    async def _room_secret(self, room: str, identity: str, secret_id: str, channel: str, where: str) -> str:
        reader = Principal(identity=Identity(identity), room=RoomName(room), role="agent",
                           api=MappingProxyType({"secrets": {}}))
        try:
            _, value = await self._secrets.get(reader, room, secret_id=secret_id, channel=channel)
        except NotFound:
            raise NotFound(f"{where}: room secret {secret_id!r} of identity {identity!r} not found in room {room!r}") from None
        except PermissionDenied as exc:
            raise PermissionDenied(f"{where}: reading room secret {secret_id!r} as {identity!r} was refused ({exc.message})") from None
        except DecryptionFailed:
            raise DecryptionFailed(f"{where}: room secret {secret_id!r} of identity {identity!r} does not decrypt") from None
        except ReauthRequired:
            # an OAuth credential whose grant is gone: the missing grant is the owner's consent
            raise ReauthRequired(f"{where}: the OAuth grant behind room secret {secret_id!r} is gone; "
                                 f"{identity!r} must consent again") from None
        except OAuthError as exc:
            raise type(exc)(f"{where}: refreshing OAuth credential {secret_id!r} failed ({exc.message})", error=exc.error) from None
        try:
            return value.reveal().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{where}: room secret {secret_id!r} is not UTF-8 text; an environment variable holds text") from None

    async def _token(self, room: str, identity: str, role: str, api: Mapping[str, Any], channel: str) -> tuple[str, float]:
        token = self._mint(identity, room, role, api, self._token_ttl)
        await self._audit.record(channel, _Place(room, identity, "token"), "mint", channel, "ok",
                                 f"role {role}, api {','.join(sorted(api)) or '-'}, ttl {self._token_ttl}s")
        return token, self._clock.now() + self._token_ttl
