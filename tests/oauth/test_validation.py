"""Pure rules: URL checks with allow_insecure_loopback off, grants and the inline
allow-list, the flow state machine, connector files and the [oauth] settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomsvc.config import load_settings
from roomsvc.connectors import load_connectors
from roomsvc.domain.oauth.connectors import (
    ClientConfig,
    check_endpoint,
    check_grant,
    check_inline_allowed,
    inline_credential_id,
    narrow,
    parse_inline_config,
)
from roomsvc.domain.oauth.credentials import OAuthCredential, TokenResponse
from roomsvc.domain.oauth.flows import (
    FlowStatus,
    InvalidTransition,
    check_move,
    digest,
    iss_ok,
    new_verifier,
    same_secret,
)
from roomsvc.errors import ConfigError, InvalidRequest, OAuthError, PermissionDenied

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("url", [
    "http://auth.example.com/authorize",  # http
    "https://127.0.0.1/token", "https://localhost/token", "https://api.localhost/x", "https://10.1.2.3/t",
    "https://192.168.0.1/t", "https://169.254.169.254/latest", "https://[::1]/t", "https://[::ffff:127.0.0.1]/t",
    "https://0.0.0.0/t", "https://user:pw@example.com/t", "https://example.com/t#frag", "ftp://example.com/t",
    "//example.com/t", "https://exa mple.com/t", "",
])
def test_http_and_loopback_or_private_endpoints_are_refused_without_insecure_loopback(url: str) -> None:
    with pytest.raises(InvalidRequest):
        check_endpoint(url, "token_endpoint", insecure_ok=False)


def test_public_https_endpoints_pass_and_loopback_http_passes_only_in_development() -> None:
    assert check_endpoint("https://auth.example.com/oauth/token?x=1", "t", insecure_ok=False)
    assert check_endpoint("https://8.8.8.8/t", "t", insecure_ok=False)
    assert check_endpoint("http://127.0.0.1:9000/token", "t", insecure_ok=True)


def test_http_links_are_refused_without_insecure_loopback(tmp_path: Path) -> None:
    # roomsvc's own links (start link, callback) are built on server.public_url
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\npublic_url = "http://rooms.example.com"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=cfg, environ={})
    assert info.value.key == "server.public_url"
    with pytest.raises(InvalidRequest):
        check_endpoint("http://127.0.0.1:8780/oauth/callback", "server.public_url", insecure_ok=False)


def test_the_secrets_grant_admits_endpoint_and_client() -> None:
    ep, cid = "https://auth.example.com/oauth/authorize", "app"
    check_grant({}, ep, cid)  # absent = allow all
    check_grant(None, ep, cid)
    check_grant({"request_oauth_token": [{"endpoint": "https://auth.example.com/oauth/*", "client_id": "app"}]}, ep, cid)
    check_grant({"request_oauth_token": [{"endpoint": ep, "client_id": "app"}]}, ep, cid)
    for bad in ([], [{"endpoint": ep, "client_id": "other"}], [{"endpoint": "https://auth.example.com/o*", "client_id": "x"}],
                [{"endpoint": "https://auth.example.com/oauth/authorize/x", "client_id": "app"}], "nope"):
        with pytest.raises(PermissionDenied):
            check_grant({"request_oauth_token": bad}, ep, cid)


def test_inline_configs_need_both_endpoints_on_the_server_allow_list() -> None:
    config = parse_inline_config({
        "client_id": "c", "authorization_endpoint": "https://a.example.com/auth", "token_endpoint": "https://a.example.com/token",
        "scopes": ["read"], "no_pkce": True, "client_secret": "s3",
    }, insecure_ok=False)
    assert config.pkce is True and config.credential_id == inline_credential_id("https://a.example.com/auth", "c")
    assert "s3" not in repr(config) and "client_secret" not in config.public_view()
    check_inline_allowed(config, ("https://a.example.com/*",))
    for allow in ((), ("https://a.example.com/auth",), ("https://b.example.com/*",)):
        with pytest.raises(PermissionDenied):
            check_inline_allowed(config, allow)
    with pytest.raises(InvalidRequest):
        parse_inline_config({"client_id": "c", "authorization_endpoint": "http://127.0.0.1/a",
                             "token_endpoint": "https://a.example.com/t"}, insecure_ok=False)
    with pytest.raises(InvalidRequest):
        parse_inline_config({"client_id": "c", "authorization_endpoint": "https://a.example.com/a",
                             "token_endpoint": "https://a.example.com/t", "redirect_uri": "x"}, insecure_ok=False)


def test_a_request_may_narrow_a_connectors_scopes_never_widen_them() -> None:
    config = ClientConfig("gh", "", "https://a/x", "https://a/t", "c", scopes=("read", "write"))
    assert narrow(config, ("read",)).scopes == ("read",)
    with pytest.raises(PermissionDenied):
        narrow(config, ("admin",))


def test_the_flow_state_machine_rejects_illegal_moves() -> None:
    check_move("f", FlowStatus.PENDING, FlowStatus.STARTED)
    check_move("f", FlowStatus.STARTED, FlowStatus.EXCHANGING)
    check_move("f", FlowStatus.PENDING, FlowStatus.EXCHANGING)  # the MeshAgent way
    for current, target in ((FlowStatus.COMPLETED, FlowStatus.EXCHANGING), (FlowStatus.EXCHANGING, FlowStatus.STARTED),
                            (FlowStatus.STARTED, FlowStatus.STARTED), (FlowStatus.EXPIRED, FlowStatus.COMPLETED),
                            (FlowStatus.EXCHANGING, FlowStatus.REJECTED), (FlowStatus.FAILED, FlowStatus.PENDING)):
        with pytest.raises(InvalidTransition):
            check_move("f", current, target)


def test_iss_is_compared_exactly_and_required_when_advertised() -> None:
    issuer = "https://op.example.com"
    assert iss_ok(issuer, issuer, required=True)
    assert not iss_ok(None, issuer, required=True)
    assert iss_ok(None, issuer, required=False)
    for bad in (issuer + "/", "https://OP.example.com", "https://evil.example.com", ""):
        assert not iss_ok(bad, issuer, required=False)


def test_secrets_of_a_flow_are_compared_by_hash_and_verifiers_follow_rfc_7636() -> None:
    assert same_secret("abc", digest("abc")) and not same_secret("abd", digest("abc")) and not same_secret(None, digest("x"))
    verifier = new_verifier()
    assert len(verifier) == 43 and verifier != new_verifier()


def test_token_responses_are_checked_and_credentials_never_show_tokens() -> None:
    with pytest.raises(OAuthError):
        TokenResponse.from_json({"token_type": "Bearer"})
    with pytest.raises(OAuthError):
        TokenResponse.from_json({"access_token": "a", "token_type": "mac"})
    response = TokenResponse.from_json({"access_token": "sentinel-at", "refresh_token": "sentinel-rt", "token_type": "bearer"})
    cred = OAuthCredential(access_token="sentinel-at", refresh_token="sentinel-rt", client_secret="sentinel-cs")
    for text in (repr(response), repr(cred), str(cred.metadata())):
        assert "sentinel" not in text
    assert OAuthCredential.from_bytes(cred.to_bytes()) == cred


def _write(root: Path, name: str, text: str) -> None:
    root.mkdir(exist_ok=True)
    (root / name).write_text(text)


def test_connector_files_load_with_their_secret_source(tmp_path: Path) -> None:
    root = tmp_path / "connectors"
    _write(root, "gh.toml", 'issuer = "https://op.example.com"\nclient_id = "c"\nclient_secret_env = "GH_SECRET"\n')
    _write(root, "file.toml", 'authorization_endpoint = "https://a.example.com/a"\ntoken_endpoint = "https://a.example.com/t"\n'
                              'client_id = "c"\nclient_secret_file = "secret.txt"\n')
    _write(root, "secret.txt", "from-a-file\n")
    _write(root, "vault.toml", 'issuer = "https://op.example.com"\nclient_id = "c"\nclient_secret_project = "oauth:GH"\n')
    _write(root, "example.toml.disabled", "this is not toml = = =")
    specs = {s.name: s for s in load_connectors(root, environ={"GH_SECRET": "from-env"}, insecure_ok=False)}
    assert sorted(specs) == ["file", "gh", "vault"]
    assert specs["gh"].client_secret.value == "from-env" and "from-env" not in repr(specs["gh"])
    assert specs["file"].client_secret.value == "from-a-file"
    assert specs["vault"].client_secret.kind == "project"
    assert load_connectors(tmp_path / "missing", environ={}, insecure_ok=False) == []


@pytest.mark.parametrize(("text", "key"), [
    ('issuer = "https://op.example.com"\nclient_id = "c"\nclient_secret = "inline"\n', "client_secret"),
    ('issuer = "https://op.example.com"\nclient_id = "c"\nclient_secret_env = "UNSET"\n', "client_secret_env"),
    ('issuer = "http://op.example.com"\nclient_id = "c"\n', "issuer"),
    ('issuer = "https://127.0.0.1"\nclient_id = "c"\n', "issuer"),
    ('client_id = "c"\n', "issuer"),
    ('issuer = "https://op.example.com"\n', "client_id"),
    ('issuer = "https://op.example.com"\nclient_id = "c"\nsurprise = 1\n', "surprise"),
    ('issuer = "https://op.example.com"\nclient_id = "c"\nheader_format = "Bearer"\n', "header_format"),
    ('issuer = "https://op.example.com"\nclient_id = "c"\nclient_secret_env = "A"\nclient_secret_file = "f"\n', "client_secret_file"),
])
def test_bad_connector_files_stop_start_up_with_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    _write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_connectors(tmp_path, environ={"A": "x"}, insecure_ok=False)
    assert info.value.key == f"connectors/bad.toml: {key}"


def test_an_inline_client_secret_is_accepted_only_when_the_file_says_so(tmp_path: Path) -> None:
    _write(tmp_path, "ok.toml", 'issuer = "https://op.example.com"\nclient_id = "c"\nclient_secret = "s"\n'
                                "client_secret_inline_ok = true\n")
    (spec,) = load_connectors(tmp_path, environ={}, insecure_ok=False)
    assert spec.client_secret.value == "s"


def test_the_shipped_example_connector_parses_once_enabled(tmp_path: Path) -> None:
    example = REPO / "config" / "connectors" / "example-github.toml.disabled"
    assert load_connectors(example.parent, environ={}, insecure_ok=False) == []  # .disabled is skipped
    (tmp_path / "github.toml").write_text(example.read_text())
    (spec,) = load_connectors(tmp_path, environ={"GITHUB_CLIENT_SECRET": "x"}, insecure_ok=False)
    assert spec.name == "github" and spec.allowed_hosts == ("api.github.com",) and spec.pkce


def test_oauth_settings_take_lists_from_toml_and_comma_separated_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[oauth]\ninline_endpoints = ["https://a.example.com/*"]\nstate_ttl = 30\n')
    s = load_settings(config_file=cfg, environ={})
    assert s.oauth.inline_endpoints == ("https://a.example.com/*",) and s.oauth.state_ttl == 30
    s = load_settings(config_file=cfg, environ={"ROOMSVC_OAUTH_INLINE_ENDPOINTS": "https://a/x, https://b/*"})
    assert s.oauth.inline_endpoints == ("https://a/x", "https://b/*")
    for text, key in (('[oauth]\ninline_endpoints = [1]\n', "oauth.inline_endpoints"),
                      ('[oauth]\ninline_endpoints = ["not a url"]\n', "oauth.inline_endpoints"),
                      ('[oauth]\nflow_timeout = 7200\n', "oauth.flow_timeout"),
                      ('[oauth]\nstate_ttl = 0\n', "oauth.state_ttl")):
        cfg.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_settings(config_file=cfg, environ={})
        assert info.value.key == key
