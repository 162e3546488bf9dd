"""A token from a provider is untrusted input: a stub token endpoint that issues an access
token with CR/LF gets its token refused at render time, before any header is sent."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from roomsvc.clock import FakeClock
from roomsvc.domain.header_spec import HeaderSpecError
from roomsvc.domain.headers import FreshToken, HeaderService
from roomsvc.domain.oauth.credentials import OAuthCredential
from roomsvc.domain.oauth.ports import ClientAuth
from roomsvc.domain.oauth.refresh import LocalLocks, Refresher
from roomsvc.domain.ports import SecretRecord
from roomsvc.domain.principal import Principal
from roomsvc.domain.secrets import KIND_OAUTH, Address
from roomsvc.errors import NotFound
from roomsvc.ids import Identity, RoomName, SecretBytes, SecretId
from roomsvc.integrations.oauth_provider import AiohttpOAuthProvider
from tests.support.fakes import FakeVault

ROOM, OWNER = RoomName("r"), Identity("tool")
RECORD = SecretRecord(ROOM, OWNER, SecretId("crm"), None, "application/json", "crm", KIND_OAUTH, 1, 0.0, 0.0)


class OneOAuthSecret:
    """Stands in for SecretService: the caller owns one OAuth credential, ``crm``."""

    async def get(self, caller: Principal, room: str, *, secret_id: str, channel: str, action: str, **kw: Any):
        if secret_id != "crm" or kw.get("delegated_to"):
            raise NotFound("nope")
        return RECORD, SecretBytes(b"(the access token, unused: OAuth goes through the refresher)")

    async def list(self, caller: Principal, room: str, **kw: Any) -> list[SecretRecord]:
        return [RECORD]


class RefreshingTokens:
    def __init__(self, refresher: Refresher) -> None:
        self.refresher = refresher

    async def fresh_access_token(self, caller: Principal, record: SecretRecord, *, channel: str) -> FreshToken:
        cred = (await self.refresher.fresh(Address(record.room, record.owner, record.id, None))).credential
        return FreshToken(cred.access_token, cred.expires_at, None)


async def test_a_crlf_token_from_the_token_endpoint_is_refused_at_render_time() -> None:
    calls: list[str] = []

    async def token_endpoint(request: web.Request) -> web.Response:
        calls.append((await request.post())["grant_type"])
        return web.json_response({"access_token": "fresh\r\nSet-Cookie: stolen=1", "token_type": "Bearer", "expires_in": 600})

    app = web.Application()
    app.router.add_post("/token", token_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/token"
    provider = AiohttpOAuthProvider(connect_timeout=2, timeout=5)
    try:
        clock = FakeClock()
        expired = OAuthCredential(access_token="old", refresh_token="rt", expires_at=clock.now() - 10, token_endpoint=url)

        async def client_auth(c: OAuthCredential) -> ClientAuth:
            return ClientAuth("client", "client_secret_basic", "secret")

        async def on_reauth(*args: Any) -> None:
            raise AssertionError("no re-authorization expected")

        refresher = Refresher(vault=FakeVault(expired), provider=provider, lock=LocalLocks(), clock=clock,  # type: ignore[arg-type]
                              client_auth=client_auth, on_reauth=on_reauth, margin=60, assumed_lifetime=3600,
                              delays=[0.01], sleep=lambda d: _noop())
        service = HeaderService(secrets=OneOAuthSecret(), tokens=RefreshingTokens(refresher))  # type: ignore[arg-type]
        caller = Principal(identity=OWNER, room=ROOM)
        with pytest.raises(HeaderSpecError) as info:
            await service.resolve(caller, ROOM, ["Authorization:Bearer {crm}"])
        assert calls == ["refresh_token"]  # the token really came from the endpoint
        assert "{crm}" in info.value.message and "control characters" in info.value.message
        assert "Set-Cookie" not in info.value.message and "fresh" not in info.value.message
    finally:
        await provider.close()
        await runner.cleanup()


async def _noop() -> None:
    return None
