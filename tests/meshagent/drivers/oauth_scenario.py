"""request_oauth_token and friends with the real MeshAgent SDK 0.44 and the test provider.

stdin: {"url", "room", "issuer", "connector", "client_id", "client_secret", "redirect_uri",
        "flow_driver_dir", "expire", "mona_identity", "tokens": {"agent", "mona", "outsider",
        "denied", "agent2"}}
stdout: ``{"result": {...}}``.

mona consents the MeshAgent way (drivers/consent_app.py: her app builds the
authorization URL from the push, signs in at the provider and hands over the code with
provide_oauth_authorization); outsider tries to answer in her place. The agent asks
for tokens: first (consent), again (stored), after expiry (refreshed), 20 at once after
expiry (one refresh); then offline fetches, a grant allow-list that refuses, and a reject.
"""

from __future__ import annotations

import asyncio
from typing import Any

from consent_app import ConsentingApp, Provider, delta
from meshagent.api.oauth import ConnectorRef, OAuthClientConfig
from sdkutil import emit, outcome, read_config, room_client

TIMEOUT = 30


async def main() -> None:
    cfg = read_config()
    url, room, tokens = cfg["url"], cfg["room"], cfg["tokens"]
    provider = Provider(cfg["issuer"])
    out: dict[str, Any] = {}
    app = ConsentingApp(cfg, out, login=cfg["mona_identity"])
    ref = ConnectorRef(openai_connector_id=cfg["connector"])
    async with room_client(url, room, tokens["mona"], oauth_token_request_handler=app.handle) as mona, \
            room_client(url, room, tokens["agent"]) as agent, room_client(url, room, tokens["outsider"]) as outsider, \
            room_client(url, room, tokens["denied"]) as denied, room_client(url, room, tokens["agent2"]) as agent2:
        app.room, app.outsider = mona, outsider
        mona_id = mona.local_participant.id

        def ask(client: Any = agent, **extra: Any) -> Any:
            return client.secrets.request_oauth_token(
                **{"connector": ref, **extra}, from_participant_id=mona_id, redirect_uri=cfg["redirect_uri"],
                timeout=TIMEOUT)

        async def step(name: str, before: dict[str, Any], token: str) -> dict[str, Any]:
            after = await provider.stats()
            out[name] = {"token": token, "userinfo": await provider.userinfo_status(token), "prompts": len(app.calls),
                         **delta(after, before)}
            return after

        stats = await provider.stats()
        first = await ask()
        stats = await step("first", stats, first)
        second = await ask()
        stats = await step("second", stats, second)
        # a real sleep, and the behaviour under test: the access token expires at the real
        # provider and in the roomsvc subprocess (clocks the SDK peer cannot move); the
        # in-process refresh tests (tests/oauth/test_refresh.py) move a fake clock instead
        await asyncio.sleep(cfg["expire"])
        third = await ask()
        stats = await step("after_expiry", stats, third)
        await asyncio.sleep(cfg["expire"])
        many = await asyncio.gather(*(ask() for _ in range(20)))
        out["concurrent_distinct"] = len(set(many))
        stats = await step("concurrent", stats, many[0])

        offline = {"connector": ref, "delegated_by": cfg["mona_identity"]}
        out["offline_covered"] = await outcome(agent.secrets.get_offline_oauth_token(**offline))
        out["offline_outsider"] = await outcome(outsider.secrets.get_offline_oauth_token(**offline))
        out["offline_own"] = await outcome(agent.secrets.get_offline_oauth_token(connector=ref))
        out["denied_request"] = await outcome(ask(denied))
        out["denied_offline"] = await outcome(denied.secrets.get_offline_oauth_token(**offline))

        app.reject_next = True
        inline = OAuthClientConfig(
            client_id=cfg["client_id"], client_secret=cfg["client_secret"], scopes=["openid"],
            authorization_endpoint=f"{cfg['issuer']}/auth", token_endpoint=f"{cfg['issuer']}/token",
        )
        out["rejected"] = await outcome(ask(agent2, connector=None, oauth=inline))
        await app.settled()
        out["prompts"] = app.calls
    emit(result=out)


asyncio.run(main())
