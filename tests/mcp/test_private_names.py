"""Production mode refuses a *name* that resolves to a loopback or private address, not only
a literal address (issue 17): discovery, registration and token requests never connect.

Offline, without touching /etc/hosts: ``0x7f000001`` is a host name to the URL rules (it is
not a literal address; aiohttp refuses ``127.1`` itself but not this) while the system
resolver reads it as 127.0.0.1, so it stands for any name an attacker's DNS points inside
the network. A real aiohttp server listens there and
counts what reaches it. The resolver's own rules are unit-tested with an injected resolver."""

from __future__ import annotations

import socket
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from roomsvc.domain.oauth.ports import ClientAuth
from roomsvc.errors import OAuthError, ProviderUnavailable
from roomsvc.integrations.oauth_provider import AiohttpOAuthProvider
from roomsvc.integrations.public_resolver import PrivateAddressRefused, PublicOnlyResolver

CANARY = "canary-query-7731"


class Listener:
    def __init__(self) -> None:
        self.hits = 0
        self.port = 0


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    seen = Listener()

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.hits += 1
        return web.json_response({"issuer": "x"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    seen.port = runner.addresses[0][1]
    yield seen
    await runner.cleanup()


def _provider(**kw: Any) -> AiohttpOAuthProvider:
    return AiohttpOAuthProvider(connect_timeout=1, timeout=2, max_response_size=1024, **kw)


async def test_a_name_resolving_to_loopback_is_refused_before_any_request(listener: Listener) -> None:
    assert socket.getaddrinfo("0x7f000001", listener.port)[0][4][0] == "127.0.0.1"  # what the trick relies on
    base = f"http://0x7f000001:{listener.port}"
    provider = _provider(public_only=True)
    try:
        calls = [
            provider.fetch_json(f"{base}/.well-known/oauth-protected-resource?{CANARY}", what="protected resource metadata"),
            provider.probe_bearer(f"{base}/mcp?{CANARY}"),
            provider.register_client(f"{base}/reg?{CANARY}", {"client_name": "roomsvc"}),
            provider.refresh(f"{base}/token?{CANARY}", ClientAuth("c", "none", ""), refresh_token="rt-canary"),
        ]
        for call in calls:
            with pytest.raises(OAuthError) as info:
                await call
            error = info.value
            # a refusal, not an outage that a caller would retry
            assert not isinstance(error, ProviderUnavailable)
            assert error.error == "private_address"
            assert "0x7f000001 resolves only to loopback or private addresses" in error.message
            assert "allow_insecure_loopback" in error.message
            assert CANARY not in error.message and "rt-canary" not in error.message
    finally:
        await provider.close()
    assert listener.hits == 0, "nothing may reach the internal address"


async def test_the_machine_s_own_host_name_is_refused_too(listener: Listener) -> None:
    name = socket.gethostname()
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo(name, listener.port, type=socket.SOCK_STREAM)}
    except OSError:
        pytest.skip(f"the host name {name!r} does not resolve here")
    if "127.0.0.1" not in addresses:
        pytest.skip(f"the host name {name!r} does not resolve to 127.0.0.1 here ({sorted(addresses)})")
    provider = _provider(public_only=True)
    try:
        with pytest.raises(OAuthError, match="resolves only to loopback or private"):
            await provider.fetch_json(f"http://{name}:{listener.port}/doc", what="authorization server metadata")
    finally:
        await provider.close()
    assert listener.hits == 0


async def test_hosts_the_operator_named_and_development_mode_still_connect(listener: Listener) -> None:
    base = f"http://0x7f000001:{listener.port}"
    for provider in (_provider(public_only=True, exempt_hosts=["0x7F000001."]), _provider(public_only=False)):
        try:
            assert await provider.fetch_json(f"{base}/doc", what="authorization server metadata") == {"issuer": "x"}
        finally:
            await provider.close()
    assert listener.hits == 2


class _Table(AbstractResolver):
    """A resolver answering from a table (the unit under test is the filter above it)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=0) for a in self.table[host]]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("addresses", [
    ["10.0.0.5"], ["192.168.1.1"], ["169.254.169.254"], ["::1"], ["fd00::1"], ["::ffff:127.0.0.1"], ["100.64.0.1"],
    ["0.0.0.0"],
])
async def test_every_non_public_address_is_dropped(addresses: list[str]) -> None:
    resolver = PublicOnlyResolver(inner=_Table({"internal.example": addresses}))
    with pytest.raises(PrivateAddressRefused, match="internal.example resolves only to loopback or private"):
        await resolver.resolve("internal.example", 443)


async def test_a_name_with_public_and_private_addresses_keeps_only_the_public_ones() -> None:
    resolver = PublicOnlyResolver(
        ["Trusted.Example."], inner=_Table({"mixed.example": ["10.0.0.5", "93.184.216.34"], "trusted.example": ["10.1.1.1"]})
    )
    assert [r["host"] for r in await resolver.resolve("mixed.example", 443)] == ["93.184.216.34"]
    assert [r["host"] for r in await resolver.resolve("trusted.example", 443)] == ["10.1.1.1"]
