"""Room secrets with the real MeshAgent SDK 0.44: one process, many checks, one JSON result.

stdin: {"url", "room", "tokens": {"alice", "admin", "no_grant", "expired", "wrong_room"},
        "api_key", "project_id"}
stdout: one JSON line with what each step saw; tests/meshagent/test_sdk_secrets.py asserts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from meshagent.api.participant_token import ApiScope, ParticipantToken, SecretsGrant
from sdkutil import emit, error_of, read_config, refused, room_client


def sdk_token(api_key: str, identity: str, room: str) -> str:
    """A token minted the MeshAgent way: ParticipantToken + the server's API key."""
    token = ParticipantToken(name=identity)
    token.add_room_grant(room)
    token.add_role_grant("agent")
    token.add_api_grant(ApiScope(secrets=SecretsGrant()))
    return token.to_jwt(api_key=api_key, expiration=datetime.now(timezone.utc) + timedelta(minutes=10))


def digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


async def attempt(coro: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "value": await coro}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, **error_of(exc)}


async def alice_steps(url: str, room: str, token: str, out: dict[str, Any]) -> None:
    big = os.urandom(3000)  # three data packets each way
    other = os.urandom(5000)
    async with room_client(url, room, token) as alice:
        s = alice.secrets
        out["alice_id"] = alice.local_participant.id
        out["alice_attributes"] = alice.local_participant.attributes
        await s.set_secret(secret_id="s1", type="text/plain", name="first", data=big)
        hit = await s.get_secret(secret_id="s1")
        out["get_hit"] = {"name": hit.name, "mime_type": hit.mime_type, "same": hit.data == big, "len": len(hit.data)}
        out["get_miss"] = repr(await s.get_secret(secret_id="nope"))
        out["exists"] = [await s.exists(secret_id="s1"), await s.exists(secret_id="nope")]
        await s.set_secret(secret_id="s2", data=other)  # no type, no name: list must still give strings
        # concurrent requests: replies must match their requests and never interleave
        gets = await asyncio.gather(*(s.get_secret(secret_id=("s1", "s2")[i % 2]) for i in range(10)))
        out["concurrent_same"] = [g.data == (big, other)[i % 2] for i, g in enumerate(gets)]
        by_label = await s.get_secret(type="text/plain", name="first")
        out["get_by_label"] = digest(by_label.data) == digest(big) if by_label else None
        out["list"] = sorted(
            [{"id": i.id, "type": i.type, "name": i.name, "delegated_to": i.delegated_to} for i in await s.list_secrets()],
            key=lambda i: i["id"],
        )
        out["for_identity_without_admin"] = await attempt(
            s.set_secret(secret_id="x", for_identity="bob", data=b"nope")
        )
        out["set_delegated"] = await attempt(s.set_secret(secret_id="shared", delegated_to="bob", data=b"for bob"))
        await s.delete_secret(id="s1")
        out["delete_again"] = await attempt(s.delete_secret(id="s1"))
        out["get_after_delete"] = repr(await s.get_secret(secret_id="s1"))


async def main() -> None:
    cfg = read_config()
    url, room, tokens = cfg["url"], cfg["room"], cfg["tokens"]
    out: dict[str, Any] = {}
    out["refused"] = {
        name: await refused(url, room, tokens[name]) for name in ("expired", "wrong_room", "garbage")
    }
    await alice_steps(url, room, tokens["alice"], out)

    async with room_client(url, room, tokens["admin"]) as admin:
        out["admin_for_identity"] = await attempt(
            admin.secrets.set_secret(secret_id="for-bob", type="text/plain", name="token", for_identity="bob", data=b"b0b")
        )
        out["admin_exists_for_bob"] = await admin.secrets.exists(secret_id="for-bob", for_identity="bob")

    async with room_client(url, room, tokens["no_grant"]) as nobody:
        out["no_grant_list"] = await attempt(nobody.secrets.list_secrets())

    # bob connects with a token the SDK minted from `roomsvc apikey`, the old way (?token=)
    os.environ.pop("MESHAGENT_API_KEY", None)
    bob_token = sdk_token(cfg["api_key"], "bob", room)
    async with room_client(url, room, bob_token, token_in_query=True) as bob:
        mine = await bob.secrets.get_secret(secret_id="for-bob")
        out["bob_reads_admin_set"] = mine.data.decode() if mine else None
        shared = await bob.secrets.get_secret(secret_id="shared", delegated_to="bob")
        out["bob_reads_delegated"] = shared.data.decode() if shared else None
        out["bob_list"] = sorted(i.id for i in await bob.secrets.list_secrets())
    emit(result=out)


asyncio.run(main())
