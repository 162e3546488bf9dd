"""The vault's keyring: unseal at start-up, rotate online, retire old keys."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from roomsvc.clock import Clock
from roomsvc.crypto.envelope import EnvelopeCipher, MasterKey, new_key, new_key_id
from roomsvc.domain.ports import KeyRecord, KeyRepository
from roomsvc.errors import Conflict, DecryptionFailed, NotFound

log = logging.getLogger("roomsvc.keys")

Progress = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True)
class KeyStatus:
    id: str
    active: bool
    created_at: float
    uses: int

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "active": self.active, "created_at": self.created_at, "uses": self.uses}


@dataclass(frozen=True)
class RotationReport:
    new_key_id: str
    rewrapped: int
    failed: int


class KeyringService:
    def __init__(self, *, store: KeyRepository, cipher: EnvelopeCipher, master: MasterKey, clock: Clock) -> None:
        self._store = store
        self._cipher = cipher
        self._master = master
        self._clock = clock
        self._rotating = asyncio.Lock()

    async def unseal(self) -> None:
        """Load every stored key-encryption key; create the first one in a new database.

        Raises:
            Sealed: the master key does not open the stored keys.
        """
        keys = await self._store.list_keys()
        if not keys:
            await self._add_new_key()
            return
        for key in keys:
            self._cipher.add_key(key.id, self._master.unwrap(key.id, key.wrapped), active=key.active)
        if not any(k.active for k in keys):
            self._cipher.add_key(keys[-1].id, self._master.unwrap(keys[-1].id, keys[-1].wrapped), active=True)

    async def reload(self) -> int:
        """Follow keys that another node added to the shared database (issue 15: several
        nodes on PostgreSQL): load each key not known here, and make the stored active key
        the one new values are encrypted under. Returns how many keys were new.

        Skipped while this node rotates (its rotation sets the active key itself).

        Raises:
            DecryptionFailed: a stored key does not open with this node's master key.
        """
        if self._rotating.locked():
            return 0
        known = set(self._cipher.key_ids())
        added = 0
        for key in await self._store.list_keys():
            if key.id not in known:
                self._cipher.add_key(key.id, self._master.unwrap(key.id, key.wrapped), active=key.active)
                added += 1
                log.info("loaded key %s added by another node", key.id)
            elif key.active and self._cipher.active_key_id != key.id:
                self._cipher.add_key(key.id, self._master.unwrap(key.id, key.wrapped), active=True)
        return added

    async def status(self) -> list[KeyStatus]:
        return [KeyStatus(k.id, k.active, k.created_at, await self._store.count_key_uses(k.id)) for k in await self._store.list_keys()]

    async def rotate(self, *, progress: Progress | None = None, batch: int = 200) -> RotationReport:
        """Add a new active key, then re-wrap every data key under it while serving goes on.

        Rotations run one at a time. Values stay readable throughout: a row is re-wrapped
        in place (same value ciphertext, new wrapped data key), and until then its old
        key still opens it.
        """
        async with self._rotating:
            old_ids = [k.id for k in await self._store.list_keys()]
            new_id = await self._add_new_key()
            # A write that encrypted under an old key just before the switch is already
            # queued (encrypt and enqueue happen in one step); this empty write commits
            # after it, so the scan below sees it.
            await self._store.replace_blobs([])
            total = sum([await self._store.count_key_uses(k) for k in old_ids])
            done = failed = 0
            if progress:
                await progress(0, total)
            for old in old_ids:
                async for items in self._store.blobs_using(old, batch=batch):
                    pairs = []
                    for item in items:
                        try:
                            pairs.append((item, self._cipher.rewrap(item.blob, to_key_id=new_id)))
                        except DecryptionFailed:
                            failed += 1
                            log.error("data key in %s row %d does not open with key %s; left as it is", item.table, item.row_id, old)
                    done += await self._store.replace_blobs(pairs)
                    if progress:
                        await progress(done + failed, max(total, done + failed))
            # report what is really left under old keys, not what this pass believes:
            # `retire` will refuse while anything is
            failed = max(failed, sum([await self._store.count_key_uses(k) for k in old_ids]))
            log.info("key rotation to %s re-wrapped %d data keys (%d failed)", new_id, done, failed)
            return RotationReport(new_id, done, failed)

    async def retire(self, key_id: str) -> None:
        """Remove an old key once no stored value uses it.

        Raises:
            NotFound: no such key. Conflict: it is active or still in use.
        """
        if key_id not in {k.id for k in await self._store.list_keys()}:
            raise NotFound(f"no key {key_id!r}")
        uses = await self._store.count_key_uses(key_id)
        if uses:
            raise Conflict(f"key {key_id!r} still protects {uses} stored values; run `roomsvc keys rotate` first")
        await self._store.delete_key(key_id)
        self._cipher.drop_key(key_id)

    async def _add_new_key(self) -> str:
        key_id, kek = new_key_id(), new_key()
        await self._store.add_key(KeyRecord(key_id, self._master.wrap(key_id, kek), self._clock.now(), active=True))
        self._cipher.add_key(key_id, kek, active=True)
        return key_id
