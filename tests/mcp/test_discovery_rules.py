"""MCP authorization discovery rules (pure): challenges, hostile metadata, issuer check,
URL rules, registration priority."""

from __future__ import annotations

import pytest

from roomsvc.domain.mcp import discovery as d
from roomsvc.domain.mcp import registration as r
from roomsvc.domain.oauth.connectors import ConnectorSpec
from roomsvc.errors import OAuthError

MCP = "https://mcp.example.com/mcp"
AS = "https://auth.example.com"


def as_doc(**over: object) -> dict:
    doc = {
        "issuer": AS,
        "authorization_endpoint": AS + "/auth",
        "token_endpoint": AS + "/token",
        "registration_endpoint": AS + "/reg",
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


# -- WWW-Authenticate ------------------------------------------------------------------------------


def test_challenge_with_metadata_and_scope() -> None:
    c = d.parse_challenge('Bearer error="invalid_token", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:tools offline_access"')
    assert c == d.Challenge("https://mcp.example.com/.well-known/oauth-protected-resource/mcp", ("mcp:tools", "offline_access"), "invalid_token")


def test_challenge_after_another_scheme_and_with_escapes() -> None:
    c = d.parse_challenge('Basic realm="x", Bearer realm="a\\"b", scope=read')
    assert c is not None and c.scopes == ("read",)


@pytest.mark.parametrize("header", ["", "Basic realm=x", "Bearer", 'Bearer scope="a"' * 2000, "Negotiate abc=="])
def test_no_usable_challenge(header: str) -> None:
    c = d.parse_challenge(header)
    assert c is None or (c.resource_metadata == "" and c.scopes == ())


def test_a_bad_scope_in_the_challenge_is_ignored() -> None:
    c = d.parse_challenge('Bearer scope="a\x01b"')
    assert c is not None and c.scopes == ()


def test_insufficient_scope_step_up_unites_scopes() -> None:
    c = d.parse_challenge('Bearer error="insufficient_scope", scope="files:write"')
    meta = d.ResourceMetadata(MCP, (AS,), ("files:read",))
    assert c is not None and c.error == "insufficient_scope"
    assert d.wanted_scopes(c, meta, held=("files:read",)) == ("files:read", "files:write")
    assert d.wanted_scopes(None, meta) == ("files:read",)


# -- where to look ---------------------------------------------------------------------------------


def test_resource_metadata_urls_in_order() -> None:
    c = d.Challenge("https://mcp.example.com/prm")
    assert d.resource_metadata_urls(MCP, c) == [
        "https://mcp.example.com/prm",
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
    ]


def test_authorization_server_metadata_urls() -> None:
    assert d.authorization_server_metadata_urls("https://as.example/tenant1") == [
        "https://as.example/.well-known/oauth-authorization-server/tenant1",
        "https://as.example/.well-known/openid-configuration/tenant1",
        "https://as.example/tenant1/.well-known/openid-configuration",
    ]
    assert d.authorization_server_metadata_urls("https://as.example/") == [
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    ]


# -- protected resource metadata (hostile) -----------------------------------------------------------


def prm(**over: object) -> dict:
    doc = {"resource": MCP, "authorization_servers": [AS], "scopes_supported": ["mcp:tools"]}
    doc.update(over)
    return doc


def test_good_resource_metadata() -> None:
    meta = d.parse_resource_metadata(prm(), mcp_url=MCP, insecure_ok=False)
    assert meta.authorization_servers == (AS,) and meta.scopes_supported == ("mcp:tools",)


@pytest.mark.parametrize("resource", [MCP, "https://mcp.example.com", "https://MCP.example.com:443/mcp", "https://mcp.example.com/"])
def test_resource_forms_that_cover_the_server(resource: str) -> None:
    assert d.parse_resource_metadata(prm(resource=resource), mcp_url=MCP, insecure_ok=False).resource == resource


@pytest.mark.parametrize(
    "resource",
    ["https://evil.example.com/mcp", "http://mcp.example.com/mcp", "https://mcp.example.com:8443/mcp",
     "https://mcp.example.com/mcp-other", "https://mcp.example.com/mcp/sub", "https://mcp.example.com.evil.net/mcp",
     "", None, 5, ["x"]],
)
def test_mismatched_resource_is_refused(resource: object) -> None:
    with pytest.raises(d.DiscoveryRefused) as info:
        d.parse_resource_metadata(prm(resource=resource), mcp_url=MCP, insecure_ok=False)
    assert info.value.error == "discovery_refused"


@pytest.mark.parametrize(
    "servers",
    [[], None, "https://auth.example.com", ["http://auth.example.com"], ["https://127.0.0.1"], ["https://10.0.0.8"],
     ["https://[::1]/"], ["https://localhost"], ["https://169.254.169.254/latest"], ["https://192.168.1.1"],
     ["https://u:p@auth.example.com"], [AS] * 17, [7]],
)
def test_hostile_authorization_servers_are_refused(servers: object) -> None:
    with pytest.raises(d.DiscoveryRefused):
        d.parse_resource_metadata(prm(authorization_servers=servers), mcp_url=MCP, insecure_ok=False)


def test_loopback_authorization_server_allowed_only_when_insecure() -> None:
    meta = d.parse_resource_metadata(
        prm(resource="http://127.0.0.1:9/mcp", authorization_servers=["http://127.0.0.2:9"]),
        mcp_url="http://127.0.0.1:9/mcp", insecure_ok=True,
    )
    assert meta.authorization_servers == ("http://127.0.0.2:9",)
    with pytest.raises(d.DiscoveryRefused, match="loopback or private"):
        d.parse_resource_metadata(
            prm(resource="https://127.0.0.1:9/mcp", authorization_servers=["https://127.0.0.2:9"]),
            mcp_url="https://127.0.0.1:9/mcp", insecure_ok=False,
        )


def test_not_an_object() -> None:
    for doc in (None, [], "x", 3):
        with pytest.raises(d.DiscoveryRefused):
            d.parse_resource_metadata(doc, mcp_url=MCP, insecure_ok=False)


# -- authorization server metadata (hostile) ------------------------------------------------------------


def test_good_authorization_server() -> None:
    s = d.parse_authorization_server_metadata(as_doc(client_id_metadata_document_supported=True), issuer=AS, insecure_ok=False)
    assert s.registration_endpoint == AS + "/reg" and s.client_id_metadata_document_supported


@pytest.mark.parametrize("issuer", ["https://evil.example.com", "https://auth.example.com/x", "https://auth.example.com//", "HTTPS://auth.example.com:444", None])
def test_issuer_mismatch_is_refused(issuer: object) -> None:
    with pytest.raises(d.DiscoveryRefused, match="another issuer"):
        d.parse_authorization_server_metadata(as_doc(issuer=issuer), issuer=AS, insecure_ok=False)


def test_root_issuer_slash_is_the_same_issuer_both_ways() -> None:
    assert d.parse_authorization_server_metadata(as_doc(issuer=AS + "/"), issuer=AS, insecure_ok=False)
    assert d.parse_authorization_server_metadata(as_doc(issuer=AS), issuer=AS + "/", insecure_ok=False)
    assert not d.same_issuer("https://a.example/t", "https://a.example/t/")


@pytest.mark.parametrize(
    "over",
    [
        {"code_challenge_methods_supported": None},
        {"code_challenge_methods_supported": ["plain"]},
        {"response_types_supported": ["token"]},
        {"authorization_endpoint": None},
        {"token_endpoint": "http://auth.example.com/token"},
        {"token_endpoint": "https://10.1.2.3/token"},
        {"registration_endpoint": "https://127.0.0.1/reg"},
        {"authorization_endpoint": "javascript:alert(1)"},
    ],
)
def test_hostile_authorization_server_metadata(over: dict) -> None:
    with pytest.raises(d.DiscoveryRefused):
        d.parse_authorization_server_metadata(as_doc(**over), issuer=AS, insecure_ok=False)


# -- registration priority ----------------------------------------------------------------------------


def server(**over: object) -> d.AuthorizationServer:
    return d.parse_authorization_server_metadata(as_doc(**over), issuer=AS, insecure_ok=False)


def test_priority_connector_then_cimd_then_dynamic() -> None:
    conn = [ConnectorSpec(name="other", client_id="x", issuer="https://other.example"), ConnectorSpec(name="ours", client_id="c", issuer=AS + "/")]
    cimd = "https://roomsvc.example" + r.CIMD_PATH
    assert r.choose(server(client_id_metadata_document_supported=True), conn, cimd_url=cimd) == r.RegistrationChoice(r.CONNECTOR, "ours")
    assert r.choose(server(client_id_metadata_document_supported=True), conn[:1], cimd_url=cimd).kind == r.CLIENT_ID_METADATA_DOCUMENT
    # CIMD needs an https public URL: http falls through to dynamic registration
    assert r.choose(server(client_id_metadata_document_supported=True), [], cimd_url="http://127.0.0.1:1" + r.CIMD_PATH).kind == r.DYNAMIC
    assert r.choose(server(), [], cimd_url=cimd) == r.RegistrationChoice(r.DYNAMIC, AS + "/reg")
    with pytest.raises(OAuthError, match="add a connector"):
        r.choose(server(registration_endpoint=None), [], cimd_url=cimd)


def test_registration_metadata_has_no_scope() -> None:
    doc = r.client_metadata(redirect_uri="https://roomsvc.example/oauth/callback")
    assert "scope" not in doc and doc["token_endpoint_auth_method"] == "none"
    assert r.client_metadata(redirect_uri="x", client_id="https://c")["client_id"] == "https://c"


def test_registration_answer() -> None:
    canary = "dcr-secret-canary-7731"
    got = r.parse_registration({"client_id": "abc", "client_secret": canary, "client_secret_expires_at": 0}, issuer=AS, now=5)
    assert got.token_endpoint_auth_method == "client_secret_basic" and got.usable(10**10)
    assert canary not in repr(got)
    assert r.RegisteredClient.from_record(got.to_record()) == got
    for bad in ({}, {"client_id": ""}, {"client_id": "a", "token_endpoint_auth_method": "private_key_jwt"}, []):
        with pytest.raises(d.DiscoveryRefused):
            r.parse_registration(bad, issuer=AS, now=0)


def test_registration_secret_id_ignores_the_root_slash() -> None:
    assert r.registration_secret_id(AS) == r.registration_secret_id(AS + "/")
    assert r.registration_secret_id(AS) != r.registration_secret_id("https://auth.example.com/t")
