"""OAuth across protocols: an SDK consenter for a native requester, and an SDK requester
for a native consenter (real MeshAgent SDK 0.44, the test provider).

stdin: {"url", "room", "issuer", "connector", "client_id", "redirect_uri", "flow_driver_dir",
        "person_identity", "native_person_id", "tokens": {"person", "agent"}}
stdout: ``{"step": "ready", "person_id", "agent_id"}``, then ``{"result": {...}}``.

After "ready" the pytest side's native agent asks the SDK person (who consents the
MeshAgent way, drivers/consent_app.py), while the SDK agent asks the native person (who
gets roomsvc's start link and consents in a browser the pytest side drives).
"""

from __future__ import annotations

import asyncio
from typing import Any

from consent_app import ConsentingApp, Provider
from meshagent.api.oauth import ConnectorRef
from sdkutil import emit, outcome, read_config, room_client

TIMEOUT = 30


async def main() -> None:
    cfg = read_config()
    url, room, tokens = cfg["url"], cfg["room"], cfg["tokens"]
    out: dict[str, Any] = {}
    app = ConsentingApp(cfg, out, login=cfg["person_identity"])
    async with room_client(url, room, tokens["person"], oauth_token_request_handler=app.handle) as person, \
            room_client(url, room, tokens["agent"]) as agent:
        app.room = person
        emit(step="ready", person_id=person.local_participant.id, agent_id=agent.local_participant.id)
        out["sdk_asks_native"] = await outcome(agent.secrets.request_oauth_token(
            connector=ConnectorRef(openai_connector_id=cfg["connector"]), from_participant_id=cfg["native_person_id"],
            redirect_uri=cfg["redirect_uri"], timeout=TIMEOUT,  # a native consenter uses roomsvc's own callback
        ))
        if out["sdk_asks_native"]["ok"]:
            out["userinfo"] = await Provider(cfg["issuer"]).userinfo_status(out["sdk_asks_native"]["value"])
        await asyncio.wait_for(app.provided.wait(), TIMEOUT)  # the native agent's request, answered here
        await app.settled()
        out["prompts"] = app.calls
    emit(result=out)


asyncio.run(main())
