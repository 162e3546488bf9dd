"""request_secret / provide_secret / reject_secret with the real MeshAgent SDK 0.44.

stdin: {"url", "room", "tokens": {"alice", "bob", "carol"}, "native_id"}
stdout: ``{"step": "ready", "alice_id", "bob_id"}``, then ``{"result": {...}}``.

alice asks, bob answers in his secret request handler (the SDK has no constructor
argument for it in 0.44: ``room.secrets._secret_request_handler``), carol tries to answer
a request that is not hers. Alongside, the pytest side's native client asks bob for a
secret (bob's handler answers it too) and answers alice's request for one.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from sdkutil import emit, outcome, read_config, room_client

TIMEOUT = 15
BIG = b"s3cret-" * 400  # 2,800 bytes: three data packets each way


async def main() -> None:
    cfg = read_config()
    url, room, tokens = cfg["url"], cfg["room"], cfg["tokens"]
    out: dict[str, Any] = {"bob_saw": []}
    native_answered = asyncio.Event()
    async with room_client(url, room, tokens["alice"]) as alice, room_client(url, room, tokens["bob"]) as bob, \
            room_client(url, room, tokens["carol"]) as carol:

        async def bob_answers(request: Any) -> None:
            out["bob_saw"].append({"url": request.url, "type": request.type, "delegate_to": request.delegate_to})
            if request.url == "secret://reject":
                await bob.secrets.reject_secret(request_id=request.request_id, error="cancelled")
            elif request.url == "secret://silent":
                return  # never answered: alice's timeout ends it
            elif request.url == "secret://steal":
                out["carol_provides"] = await outcome(carol.secrets.provide_secret(request_id=request.request_id, data=b"x"))
                await bob.secrets.provide_secret(request_id=request.request_id, data=b"ok")
            elif request.url == "secret://for-native":
                await bob.secrets.provide_secret(request_id=request.request_id, data=b"from-sdk")
                native_answered.set()
            else:
                await bob.secrets.provide_secret(request_id=request.request_id, data=BIG)

        bob.secrets._secret_request_handler = bob_answers
        emit(step="ready", alice_id=alice.local_participant.id, bob_id=bob.local_participant.id)

        ask = alice.secrets.request_secret
        bob_id = bob.local_participant.id
        got = await ask(url="secret://db", type="text/plain", from_participant_id=bob_id, timeout=TIMEOUT)
        out["provided_same"] = got == BIG
        out["listed"] = [s.model_dump() for s in await alice.secrets.list_secrets()]
        stored = await alice.secrets.get_secret(secret_id=out["listed"][0]["id"])
        out["stored_same"] = stored is not None and stored.data == BIG
        out["rejected"] = await outcome(ask(url="secret://reject", type="text/plain", from_participant_id=bob_id, timeout=TIMEOUT))
        out["timed_out"] = await outcome(ask(url="secret://silent", type="text/plain", from_participant_id=bob_id, timeout=1))
        out["stolen"] = await outcome(ask(url="secret://steal", type="git", from_participant_id=bob_id, timeout=TIMEOUT))
        out["delegated"] = await outcome(ask(url="secret://for-carol", type="text/plain", from_participant_id=bob_id,
                                             timeout=TIMEOUT, delegate_to="carol"))
        # stored as alice's secret delegated to carol: carol's own list stays empty, she names it to read it
        out["carol_lists"] = [s.name for s in await carol.secrets.list_secrets()]
        delegated_id = "req:" + hashlib.sha256(b"secret://for-carol\ntext/plain").hexdigest()[:40]
        got = await carol.secrets.get_secret(secret_id=delegated_id, delegated_to="carol")
        out["carol_reads_delegated"] = got.data.decode() if got is not None else None
        out["from_native"] = await outcome(ask(url="secret://from-native", type="text/plain",
                                               from_participant_id=cfg["native_id"], timeout=TIMEOUT))
        out["nobody"] = await outcome(ask(url="secret://x", type="text/plain", from_participant_id="nobody", timeout=TIMEOUT))
        out["delete"] = await outcome(alice.secrets.delete_requested_secret(url="secret://db", type="text/plain"))
        out["delete_again"] = await outcome(alice.secrets.delete_requested_secret(url="secret://db", type="text/plain"))
        out["listed_after"] = sorted(s.name for s in await alice.secrets.list_secrets())
        await asyncio.wait_for(native_answered.wait(), TIMEOUT)
    emit(result=out)


asyncio.run(main())
