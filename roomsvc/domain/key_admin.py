"""Key administration: the master keys' status, rotation and retirement, and backups.

The rules live here, whatever asks (today ``/v1/admin/...``): only an operator token
(project-level: the ``admin`` section and no room) may act, and each change is audited
with the operator's identity - a rotation also when it fails. The keyring and the
backup writer are ports: the composition root passes the crypto keyring and the store.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Protocol

from roomsvc.domain.audit import Auditor
from roomsvc.domain.principal import Principal
from roomsvc.errors import PermissionDenied

log = logging.getLogger("roomsvc.keys")

Progress = Callable[[int, int], Awaitable[None]]


class KeyInfo(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class Rotation(Protocol):
    @property
    def new_key_id(self) -> str: ...

    @property
    def rewrapped(self) -> int: ...

    @property
    def failed(self) -> int: ...


class Keyring(Protocol):
    async def status(self) -> list[Any]: ...
    async def rotate(self, *, progress: Progress | None = None, batch: int = 200) -> Any: ...
    async def retire(self, key_id: str) -> None: ...


class KeyAdministration:
    def __init__(self, *, keyring: Keyring, auditor: Auditor, backup: Callable[[str], Awaitable[str]]) -> None:
        self._keyring = keyring
        self._audit = auditor
        self._backup = backup

    def authorize(self, caller: Principal) -> Principal:
        """Check first, before a request's body is read or a response begins.

        Raises:
            PermissionDenied: not an operator token.
        """
        if not caller.is_operator:
            raise PermissionDenied("this endpoint needs an operator token (roomsvc token --operator)")
        return caller

    async def status(self, caller: Principal) -> list[KeyInfo]:
        self.authorize(caller)
        found: list[KeyInfo] = await self._keyring.status()
        return found

    async def rotate(self, caller: Principal, *, progress: Progress | None = None) -> Rotation:
        """Add a new master key and re-wrap every data key under it; audited either way.

        Raises:
            PermissionDenied. Whatever the rotation raised (logged and audited by name).
        """
        self.authorize(caller)
        observer = self._audit.observer

        async def observed(done: int, total: int) -> None:
            observer.key_rotation(done, total)
            if progress is not None:
                await progress(done, total)

        try:
            with observer.span("keys.rotate", operation="rotate_keys"):
                report: Rotation = await self._keyring.rotate(progress=observed)
        except Exception as exc:
            log.exception("key rotation failed")
            await self._audit.record(caller, None, "keys.rotate", "admin", "error", type(exc).__name__)
            raise
        await self._audit.record(caller, None, "keys.rotate", "admin", "ok", report.new_key_id)
        return report

    async def retire(self, caller: Principal, key_id: str) -> None:
        """Raises: PermissionDenied, and the keyring's refusal (a key still in use)."""
        self.authorize(caller)
        await self._keyring.retire(key_id)
        await self._audit.record(caller, None, "keys.retire", "admin", "ok", key_id)

    async def backup(self, caller: Principal, name: str) -> str:
        """A consistent copy of the database named ``name`` inside the backup directory; its path."""
        self.authorize(caller)
        path = await self._backup(name)
        await self._audit.record(caller, None, "backup", "admin", "ok")
        return path
