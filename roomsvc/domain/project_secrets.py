"""Project secrets: ``keys`` bags (KEY=VALUE pairs for deployed services, referenced by a
service spec's ``container.secrets``) and image ``pull`` secrets (registry credentials,
referenced by ``container.pull_secret``).

Both are managed by operators (a token with the admin API section and no room). No read
API returns their values: only the resolvers, which the service runner calls, decrypt
them, and each use is audited.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.ports import Cipher, ProjectSecretRecord, SecretRepository
from roomsvc.domain.principal import Principal
from roomsvc.errors import DecryptionFailed, InvalidRequest, NotFound, PermissionDenied, TooLarge
from roomsvc.ids import parse_secret_id

KIND_KEYS = "keys"
KIND_PULL = "pull"
#: an MCP authorization server's dynamic client registration (issue 17), written by roomsvc itself
KIND_MCP_CLIENT = "mcp-client"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class _Place:
    room: None
    owner: None
    id: str


@dataclass(frozen=True)
class PullCredentials:
    server: str
    username: str
    password: str
    email: str | None = None

    def __repr__(self) -> str:
        return f"PullCredentials(server={self.server!r}, username={self.username!r}, password=<hidden>)"


def project_aad(record: ProjectSecretRecord) -> bytes:
    return json.dumps(["roomsvc/project-secret/v1", record.kind, record.id, record.version], separators=(",", ":")).encode()


def parse_pairs(text: str) -> dict[str, str]:
    """``"K1=v1 K2=v2"`` (space separated, as MeshAgent's CLI takes them) into a dict.

    Raises:
        InvalidRequest: an item has no ``=``. The item is not quoted back: a stray
            space inside a value (``K=a b``) would otherwise print part of the value.
    """
    pairs: dict[str, str] = {}
    for number, item in enumerate(text.split(), start=1):
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidRequest(f"expected KEY=VALUE pairs separated by spaces; item {number} has no '='")
        pairs[key] = value
    return pairs


class KeysBag(dict[str, str]):
    """The KEY=VALUE pairs of a keys secret, as a dict whose repr shows the keys only."""

    def __repr__(self) -> str:
        return f"KeysBag(keys={sorted(self)}, <values hidden>)"

    __str__ = __repr__


class ProjectSecretService:
    def __init__(self, *, store: SecretRepository, cipher: Cipher, auditor: Auditor, clock: Clock, max_value_size: int) -> None:
        self._store = store
        self._cipher = cipher
        self._audit = auditor
        self._clock = clock
        self._max = max_value_size

    async def put_keys(self, caller: Principal, *, id: str, data: dict[str, str], name: str | None = None) -> ProjectSecretRecord:
        """Create or replace a keys bag (operator only; a denial is audited)."""
        await self._operator(caller, id, "set")
        if not isinstance(data, dict) or not data:
            raise InvalidRequest("a keys secret needs at least one KEY=VALUE pair")
        for key, value in data.items():
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                raise InvalidRequest(f"key names must be environment-variable names, got {str(key)[:40]!r}")
            if not isinstance(value, str):
                raise InvalidRequest(f"value of {key!r} must be a string")
        return await self._put(caller, id, name, KIND_KEYS, data)

    async def put_pull(
        self, caller: Principal, *, id: str, server: str, username: str, password: str, email: str | None = None, name: str | None = None
    ) -> ProjectSecretRecord:
        """Create or replace an image pull secret (operator only; a denial is audited)."""
        await self._operator(caller, id, "set")
        for field, value in (("server", server), ("username", username), ("password", password)):
            if not isinstance(value, str) or not value:
                raise InvalidRequest(f"a pull secret needs a non-empty {field}")
        if email is not None and not isinstance(email, str):
            raise InvalidRequest("email must be a string")
        payload = {"server": server, "username": username, "password": password, "email": email}
        return await self._put(caller, id, name, KIND_PULL, payload)

    async def list(self, caller: Principal, *, kind: str | None = None) -> list[ProjectSecretRecord]:
        await self._operator(caller, None, "list")
        return await self._store.list_project_secrets(kind)

    async def delete(self, caller: Principal, *, id: str, kind: str | None = None) -> None:
        await self._operator(caller, id, "delete")
        id_ = parse_secret_id(id)
        found = await self._store.get_project_secret(id_)
        if found is None or (kind and found[0].kind != kind):
            await self._audit.record(caller, _Place(None, None, id_), "delete", "admin", "not_found", kind or "")
            raise NotFound(f"project secret {id_!r} not found")
        await self._store.delete_project_secret(id_, audit=self._audit.line(caller, _Place(None, None, id_), "delete", "admin", "ok"))

    # -- resolvers (called by the service runner, never by a client API) ---------------------

    async def resolve_keys(self, id: str, *, service: str) -> KeysBag:
        """The KEY=VALUE pairs of a ``container.secrets`` entry, for service ``service``.

        Raises:
            NotFound: no keys secret ``id``. DecryptionFailed: it does not open. Both audited.
        """
        return KeysBag(await self._resolve(id, KIND_KEYS, service))

    async def resolve_pull(self, id: str, *, service: str) -> PullCredentials:
        """The registry credentials of a ``container.pull_secret``, for pulling only."""
        data = await self._resolve(id, KIND_PULL, service)
        return PullCredentials(data["server"], data["username"], data["password"], data.get("email"))

    # -- system-kept secrets: MCP client registrations (issue 17) -------------------------------

    async def put_system(self, *, id: str, kind: str, name: str, payload: dict) -> ProjectSecretRecord:
        """Create or replace a secret roomsvc keeps for itself (no caller: audited as ``system:<kind>``)."""
        return await self._put(f"system:{kind}", id, name, kind, payload)

    async def resolve_system(self, id: str, *, kind: str) -> dict | None:
        """A system-kept secret's payload, or None when there is none (audited as ``system:<kind>``)."""
        found = await self._store.get_project_secret(parse_secret_id(id))
        if found is None or found[0].kind != kind:
            return None
        return await self._resolve(id, kind, kind)

    # -- internals -----------------------------------------------------------------------------

    async def _operator(self, caller: Principal, id: object, action: str) -> None:
        if not caller.is_operator:
            shown = id[:256] if isinstance(id, str) and id else "*"
            await self._audit.record(caller, _Place(None, None, shown), action, "admin", "denied", "not an operator token")
            raise PermissionDenied("project secrets need an operator token (admin API section, no room grant)")

    async def _put(self, caller: Principal | str, id: str, name: str | None, kind: str, payload: dict) -> ProjectSecretRecord:
        id_ = parse_secret_id(id)
        plaintext = json.dumps(payload).encode()
        if len(plaintext) > self._max:
            raise TooLarge(f"project secret is {len(plaintext)} bytes; the limit is {self._max}")
        current = await self._store.get_project_secret(id_)
        now = self._clock.now()
        record = ProjectSecretRecord(
            id=id_, name=name or (current[0].name if current else id_), kind=kind,
            version=(current[0].version + 1) if current else 1,
            created_at=current[0].created_at if current else now, updated_at=now,
        )
        blob = self._cipher.encrypt(plaintext, project_aad(record))
        action = "create" if current is None else "update"
        return await self._store.put_project_secret(record, blob, audit=self._audit.line(caller, _Place(None, None, id_), action, "admin", "ok", kind))

    async def _resolve(self, id: str, kind: str, service: str) -> dict:
        id_ = parse_secret_id(id)
        place = _Place(None, None, id_)
        found = await self._store.get_project_secret(id_)
        if found is None or found[0].kind != kind:
            await self._audit.record(f"service:{service}", place, "use", "resolver", "not_found", kind)
            raise NotFound(f"project {kind} secret {id!r} not found")
        record, blob = found
        try:
            data = json.loads(self._cipher.decrypt(blob, project_aad(record)))
        except DecryptionFailed:
            await self._audit.record(f"service:{service}", place, "use", "resolver", "decrypt_failed", kind)
            raise
        await self._audit.record(f"service:{service}", place, "use", "resolver", "ok", kind)
        return data
