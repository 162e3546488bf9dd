"""The outbound OAuth client against a misbehaving provider (a tiny in-process aiohttp
app): every failure becomes a roomsvc error, nothing is followed or read unbounded."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import unquote_plus

import pytest
from aiohttp import web

from roomsvc.domain.oauth.ports import ClientAuth
from roomsvc.errors import OAuthError, ProviderUnavailable
from roomsvc.integrations.oauth_provider import AiohttpOAuthProvider

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def provider() -> AsyncIterator[AiohttpOAuthProvider]:
    p = AiohttpOAuthProvider(connect_timeout=1, timeout=0.5, max_response_size=1024)
    yield p
    await p.close()


AUTH = ClientAuth("my client", "client_secret_basic", "s+cr%t")


@pytest.mark.parametrize(("answer", "error"), [
    (lambda: web.Response(status=302, headers={"Location": "http://evil.example/"}), OAuthError),
    (lambda: web.Response(status=500, text="<html>oops</html>"), ProviderUnavailable),
    (lambda: web.Response(status=429), ProviderUnavailable),
    (lambda: web.Response(status=200, text="<html>not json</html>"), OAuthError),
    (lambda: web.json_response({"error": "invalid_grant", "error_description": "<script>"}, status=400), OAuthError),
    (lambda: web.json_response({"error": "invalid_grant"}, status=200), OAuthError),
    (lambda: web.json_response({"token_type": "Bearer"}), OAuthError),
    (lambda: web.json_response({"access_token": "a", "token_type": "mac"}), OAuthError),
    (lambda: web.json_response({"access_token": "a" * 5000}), OAuthError),
])
async def test_bad_token_answers_become_roomsvc_errors(serve: Any, provider: AiohttpOAuthProvider, answer: Any,
                                                        error: type) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return answer()  # type: ignore[no-any-return]

    base = await serve(handler)
    with pytest.raises(error) as info:
        await provider.refresh(f"{base}/token", AUTH, refresh_token="sentinel-rt")
    assert "sentinel" not in str(info.value) and "<script>" not in str(info.value)
    if "invalid_grant" in str(info.value):
        assert info.value.error == "invalid_grant"


async def test_a_stalled_provider_times_out_as_unavailable(serve: Any, provider: AiohttpOAuthProvider) -> None:
    answer = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        await answer.wait()  # stalls until the client has given up
        return web.json_response({"access_token": "late"})

    base = await serve(handler)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.exchange_code(f"{base}/token", AUTH, code="c", redirect_uri="https://x/cb", code_verifier="v" * 43)
    finally:
        answer.set()


async def test_an_unreachable_provider_is_unavailable(provider: AiohttpOAuthProvider) -> None:
    with pytest.raises(ProviderUnavailable):
        await provider.refresh("http://127.0.0.1:1/token", AUTH, refresh_token="r")


async def test_client_secret_basic_form_encodes_id_and_secret(serve: Any, provider: AiohttpOAuthProvider) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen["auth"] = request.headers["Authorization"]
        seen["form"] = dict(await request.post())
        return web.json_response({"access_token": "at", "token_type": "Bearer", "expires_in": 60, "scope": "a b"})

    base = await serve(handler)
    response = await provider.exchange_code(f"{base}/token", AUTH, code="the-code", redirect_uri="https://x/cb",
                                            code_verifier="v" * 43)
    assert response.access_token == "at" and response.expires_in == 60 and response.refresh_token is None
    user, _, secret = base64.b64decode(seen["auth"][6:]).decode().partition(":")
    assert (unquote_plus(user), unquote_plus(secret)) == ("my client", "s+cr%t") and "%25" in secret
    assert seen["form"] == {"grant_type": "authorization_code", "redirect_uri": "https://x/cb", "code": "the-code",
                            "code_verifier": "v" * 43}


async def test_discovery_needs_the_exact_issuer(serve: Any, provider: AiohttpOAuthProvider) -> None:
    issuer_box: dict[str, str] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/.well-known/openid-configuration":
            return web.json_response({"issuer": issuer_box["issuer"], "authorization_endpoint": "https://a/x",
                                      "token_endpoint": "https://a/t", "authorization_response_iss_parameter_supported": True,
                                      "code_challenge_methods_supported": ["S256"]})
        return web.Response(status=404)

    base = await serve(handler)
    issuer_box["issuer"] = base + "/"
    with pytest.raises(OAuthError, match="another issuer"):
        await provider.discover(base)
    issuer_box["issuer"] = base
    meta = await provider.discover(base)
    assert meta.iss_parameter_supported and meta.code_challenge_methods == ("S256",)
