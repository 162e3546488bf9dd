"""PostgreSQL repository of OAuth flows (:class:`~roomsvc.domain.oauth.ports.FlowRepository`).

The twin of :mod:`roomsvc.storage.sqlite.oauth_store`, riding on
:class:`~roomsvc.storage.postgres.store.PostgresStore` (its group-commit writer and its
reader pool). Every state change is one conditional ``UPDATE ... WHERE status IN (...)
[AND state_hash = ? AND state_expires_at > ?] RETURNING``: PostgreSQL re-checks the
condition on the row it locks, so a start ticket, a state or a code is consumed once even
when two nodes race for it.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from roomsvc.domain.oauth.flows import MOVES, Flow, FlowStatus
from roomsvc.domain.ports import EncryptedBlob
from roomsvc.errors import AlreadyExists
from roomsvc.storage.postgres.store import PostgresStore, rowcount, sql

_COLS = (
    "id, room, mode, status, requester, requester_participant, consenter, consenter_participant, owner, "
    "delegate_to, credential_id, client, redirect_uri, start_hash, state_hash, binding_hash, state_expires_at, "
    "created_at, expires_at, error"
)


class PostgresFlowStore:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def create_flow(self, flow: Flow, secrets: EncryptedBlob, *, purge_before: float) -> None:
        async def job(db: asyncpg.Connection) -> None:
            await db.execute(sql("DELETE FROM oauth_flows WHERE expires_at < ?"), float(purge_before))
            try:
                await db.execute(
                    sql(
                        f"INSERT INTO oauth_flows ({_COLS}, updated_at, kek_id, wrapped_dek, ciphertext) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    flow.id, flow.room, flow.mode, flow.status.value, flow.requester, flow.requester_participant,
                    flow.consenter, flow.consenter_participant, flow.owner, flow.delegate_to, flow.credential_id,
                    json.dumps(dict(flow.client)), flow.redirect_uri, flow.start_hash or None,
                    flow.state_hash or None, flow.binding_hash or None, float(flow.state_expires_at),
                    float(flow.created_at), float(flow.expires_at), flow.error, float(flow.created_at),
                    secrets.kek_id, secrets.wrapped_dek, secrets.ciphertext,
                )
            except asyncpg.UniqueViolationError as exc:
                raise AlreadyExists("an OAuth flow with that id or ticket already exists") from exc

        await self._store._write(job)

    async def get_flow(
        self, *, id: str | None = None, start_hash: str | None = None, state_hash: str | None = None
    ) -> Flow | None:
        (column, value), = [(c, v) for c, v in (("id", id), ("start_hash", start_hash), ("state_hash", state_hash)) if v]
        rows = await self._store._read(f"SELECT {_COLS} FROM oauth_flows WHERE {column} = ?", value)
        return _flow(rows[0]) if rows else None

    async def move_flow(
        self,
        flow_id: str,
        target: FlowStatus,
        *,
        now: float,
        state_hash: str | None = None,
        live: bool = False,
        opened: tuple[str, str, float] | None = None,
        error: str = "",
    ) -> Flow | None:
        sources = sorted(s.value for s in MOVES[target])
        if not sources:
            return None
        sets = ["status = ?", "updated_at = ?"]
        params: list[Any] = [target.value, float(now)]
        if opened is not None:
            sets += ["state_hash = ?", "binding_hash = ?", "state_expires_at = ?", "start_hash = NULL"]
            params += [opened[0], opened[1], float(opened[2])]
        if error:
            sets.append("error = ?")
            params.append(error)
        if target.terminal:
            # the verifier is of no use any more: erase it
            sets += ["kek_id = NULL", "wrapped_dek = NULL", "ciphertext = NULL"]
        where = ["id = ?", f"status IN ({', '.join('?' * len(sources))})"]
        params += [flow_id, *sources]
        if state_hash is not None:
            where += ["state_hash = ?", "state_expires_at > ?"]
            params += [state_hash, float(now)]
        if live:
            where.append("expires_at > ?")
            params.append(float(now))
        text = sql(f"UPDATE oauth_flows SET {', '.join(sets)} WHERE {' AND '.join(where)} RETURNING {_COLS}")

        async def job(db: asyncpg.Connection) -> Flow | None:
            row = await db.fetchrow(text, *params)
            return _flow(row) if row is not None else None

        result: Flow | None = await self._store._write(job)
        return result

    async def purge_flows(self, *, now: float, before: float, stuck_before: float) -> tuple[int, int]:
        unended = sorted(s.value for s in MOVES[FlowStatus.EXPIRED])
        marks = ", ".join("?" * len(unended))

        async def job(db: asyncpg.Connection) -> tuple[int, int]:
            # expired first, as the state machine wants, and the verifier erased with it
            moved = await db.execute(
                sql(
                    "UPDATE oauth_flows SET status = ?, updated_at = ?, error = 'deadline passed', "
                    f"kek_id = NULL, wrapped_dek = NULL, ciphertext = NULL WHERE status IN ({marks}) AND expires_at < ?"
                ),
                FlowStatus.EXPIRED.value, float(now), *unended, float(before),
            )
            gone = await db.execute(
                sql("DELETE FROM oauth_flows WHERE expires_at < ? AND (status <> ? OR expires_at < ?)"),
                float(before), FlowStatus.EXCHANGING.value, float(stuck_before),
            )
            return rowcount(moved), rowcount(gone)

        counts: tuple[int, int] = await self._store._write(job)
        return counts

    async def flow_secrets(self, flow_id: str) -> EncryptedBlob | None:
        rows = await self._store._read(
            "SELECT kek_id, wrapped_dek, ciphertext FROM oauth_flows WHERE id = ? AND ciphertext IS NOT NULL", flow_id
        )
        if not rows:
            return None
        return EncryptedBlob(rows[0][0], bytes(rows[0][1]), bytes(rows[0][2]))


def _flow(r: asyncpg.Record) -> Flow:
    return Flow(
        id=r[0], room=r[1], mode=r[2], status=FlowStatus(r[3]), requester=r[4], requester_participant=r[5],
        consenter=r[6], consenter_participant=r[7], owner=r[8], delegate_to=r[9], credential_id=r[10],
        client=json.loads(r[11]), redirect_uri=r[12], start_hash=r[13] or "", state_hash=r[14] or "",
        binding_hash=r[15] or "", state_expires_at=r[16], created_at=r[17], expires_at=r[18], error=r[19],
    )
