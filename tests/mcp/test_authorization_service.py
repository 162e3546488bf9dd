"""McpAuthorization (domain) with fakes for its two ports: the order of fetches, refusal
before anything a document names is fetched, single-flight registration reused from the
store, trusted MCP servers, and step-up scope union."""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import pytest

from roomsvc.clock import FakeClock
from roomsvc.domain.mcp import discovery as d
from roomsvc.domain.mcp.authorization import McpAuthorization
from roomsvc.domain.mcp.registration import RegisteredClient
from roomsvc.domain.oauth.registry import ConnectorRegistry
from roomsvc.errors import InvalidRequest

MCP = "https://mcp.example.com/mcp"
AS = "https://auth.example.com"
PRM = {"resource": MCP, "authorization_servers": [AS], "scopes_supported": ["read"]}
ASM = {"issuer": AS, "authorization_endpoint": AS + "/auth", "token_endpoint": AS + "/token",
       "registration_endpoint": AS + "/reg", "code_challenge_methods_supported": ["S256"]}


class FakeHttp:
    def __init__(self, docs: dict[str, Any], challenge: str = 'Bearer resource_metadata="https://mcp.example.com/prm"') -> None:
        self.docs = docs
        self.challenge = challenge
        self.fetched: list[str] = []
        self.registered = 0

    async def probe_bearer(self, url: str) -> tuple[int, str]:
        self.fetched.append("probe " + url)
        return 401, self.challenge

    async def fetch_json(self, url: str, *, what: str) -> Any:
        self.fetched.append(url)
        await asyncio.sleep(0)
        return self.docs.get(url)

    async def register_client(self, endpoint: str, metadata: Mapping[str, Any]) -> Any:
        assert "scope" not in metadata
        self.registered += 1
        await asyncio.sleep(0.01)
        return {"client_id": f"dcr-{self.registered}"}


class MemoryStore:
    def __init__(self) -> None:
        self.kept: dict[str, RegisteredClient] = {}

    async def load(self, issuer: str) -> RegisteredClient | None:
        return self.kept.get(issuer)

    async def save(self, client: RegisteredClient) -> None:
        self.kept[client.issuer] = client


def service(http: FakeHttp, store: Any = None, *, insecure: bool = False, trusted: tuple[str, ...] = ()) -> McpAuthorization:
    clock = FakeClock(start=1000.0)
    return McpAuthorization(
        http=http, store=store or MemoryStore(), registry=ConnectorRegistry([], provider=None, clock=clock, discovery_ttl=60,  # type: ignore[arg-type]
                                                                          insecure_ok=insecure),
        connectors=[], clock=clock, insecure_ok=insecure, redirect_uri=lambda: "https://roomsvc.example/oauth/callback",
        cimd_url=lambda: "https://roomsvc.example/oauth/client-metadata.json", trusted_servers=trusted,
    )


GOOD = {"https://mcp.example.com/prm": PRM, "https://auth.example.com/.well-known/oauth-authorization-server": ASM}


async def test_discovery_registration_once_for_concurrent_requests_and_reused() -> None:
    http, store = FakeHttp(GOOD), MemoryStore()
    mcp = service(http, store)
    clients = await asyncio.gather(*[mcp.client({"url": MCP}) for _ in range(5)])
    assert http.registered == 1 and {c.client_id for c in clients} == {"dcr-1"}
    assert clients[0].resource == MCP and clients[0].scopes == ("read",) and clients[0].pkce
    assert clients[0].credential_id.startswith("mcp:")
    # another process on the same store (a restart): no new registration
    assert (await service(FakeHttp(GOOD), store).client({"url": MCP})).client_id == "dcr-1"


async def test_hostile_resource_metadata_stops_before_the_authorization_server_is_fetched() -> None:
    http = FakeHttp({**GOOD, "https://mcp.example.com/prm": {**PRM, "resource": "https://evil.example.com/mcp"}})
    with pytest.raises(d.DiscoveryRefused, match="another resource"):
        await service(http).client({"url": MCP})
    assert not [u for u in http.fetched if "auth.example.com" in u] and http.registered == 0


async def test_a_challenge_pointing_at_a_private_address_is_not_fetched() -> None:
    http = FakeHttp(GOOD, challenge='Bearer resource_metadata="https://10.0.0.5/prm"')
    with pytest.raises(d.DiscoveryRefused, match="loopback or private"):
        await service(http).client({"url": MCP})
    assert "https://10.0.0.5/prm" not in http.fetched


async def test_trusted_mcp_server_on_a_private_address_but_not_what_it_names() -> None:
    url = "http://10.0.0.7:8000/mcp"
    docs = {"http://10.0.0.7:8000/.well-known/oauth-protected-resource/mcp":
            {"resource": url, "authorization_servers": ["http://10.0.0.8"]}}
    with pytest.raises(d.DiscoveryRefused, match="must use https"):
        await service(FakeHttp(docs, challenge=""), trusted=("http://10.0.0.7:8000/*",)).client({"url": url})
    with pytest.raises(d.DiscoveryRefused, match="MCP server URL must use https"):
        await service(FakeHttp(docs, challenge="")).client({"url": url})


async def test_step_up_asks_for_held_and_challenged_scopes() -> None:
    mcp = service(FakeHttp({**GOOD, "https://mcp.example.com/.well-known/oauth-protected-resource/mcp": PRM}))
    assert (await mcp.client({"url": MCP})).scopes == ("read",)
    client = await mcp.client({"url": MCP, "scopes": ["read"],
                               "www_authenticate": 'Bearer error="insufficient_scope", scope="write"'})
    assert client.scopes == ("read", "write")


@pytest.mark.parametrize("request_", [None, "x", {"url": MCP, "extra": 1}, {"url": MCP, "www_authenticate": 5},
                                      {"url": MCP, "scopes": "a\\x01"}, {}])
async def test_bad_mcp_objects_are_refused(request_: Any) -> None:
    with pytest.raises((InvalidRequest, d.DiscoveryRefused)):
        await service(FakeHttp(GOOD)).client(request_)


async def test_a_confidential_registration_keeps_its_secret_out_of_names_and_reprs() -> None:
    from roomsvc.domain.mcp.authorization import ProjectRegistrations

    canary = "dcr-client-secret-canary-5150"
    kept: dict[str, Any] = {}

    class Port:
        async def put_system(self, *, id: str, kind: str, name: str, payload: dict) -> None:
            kept.update(id=id, kind=kind, name=name, payload=payload)

        async def resolve_system(self, id: str, *, kind: str) -> dict | None:
            return kept.get("payload") if kept.get("id") == id else None

    store = ProjectRegistrations(Port())
    client = RegisteredClient(issuer=AS, client_id="c-1", token_endpoint_auth_method="client_secret_basic", client_secret=canary)
    await store.save(client)
    assert kept["kind"] == "mcp-client" and canary not in kept["name"] and "c-1" in kept["name"]
    loaded = await store.load(AS + "/")  # the root slash names the same server
    assert loaded == client and canary not in repr(loaded)
    config = await service(FakeHttp(GOOD), store).client({"url": MCP})
    assert config.client_id == "c-1" and config.token_endpoint_auth_method == "client_secret_basic"
    assert canary not in repr(config) and canary not in str(config.to_record())
