"""Domain notices as MeshAgent pushes: pure values in, pushes out (no socket, no loop)."""

from __future__ import annotations

import json

from roomsvc.domain.events import Notice
from roomsvc.transport.meshagent.notices import notice_push, whole_seconds

ME = "p-me"


def oauth_notice(**changes: object) -> Notice:
    """A consent request as ConsentFlows builds it for a participant of another protocol."""
    data = {
        "request_id": "flow-1",
        "request": {
            "connector": "github",
            "oauth": {"client_id": "cid", "authorization_endpoint": "https://idp.example/auth",
                      "token_endpoint": "https://idp.example/token", "scopes": ["openid"], "no_pkce": False,
                      "client_secret": "must-not-leave"},
            "participant_id": ME, "timeout": 299.5, "delegate_to": None,
            "redirect_uri": "https://app.example/oauth2/callback",
        },
        "from": {"id": "p-agent", "identity": "agent", "role": "agent", "attributes": {}},
        "expires_at": 1700000300.0,
        "challenge": "c" * 43,
        "owner": "person",
        "usable_by": ["agent", "person"],
        **changes,
    }
    return Notice("secrets.request_oauth_token", data)


def test_a_consent_request_has_the_sdk_shape_and_no_client_secret() -> None:
    push = notice_push(oauth_notice(), ME)
    assert push is not None and push.type == "secrets.request_oauth_token"
    assert push.header == {
        "request_id": "flow-1",
        "request": {
            "connector": None,  # the SDK parses it as a ConnectorRef: the resolved client is in oauth
            "oauth": {"client_id": "cid", "authorization_endpoint": "https://idp.example/auth",
                      "token_endpoint": "https://idp.example/token", "no_pkce": False, "scopes": ["openid"]},
            "redirect_uri": "https://app.example/oauth2/callback", "participant_id": ME,
            "timeout": 300, "delegate_to": None,
        },
        "challenge": "c" * 43,
        # roomsvc's addition, at the top level so the SDK's request model is untouched
        "owner": "person",
        "usable_by": ["agent", "person"],
    }
    assert "must-not-leave" not in json.dumps(push.header)


def test_a_consent_request_without_pkce_has_a_null_challenge() -> None:
    push = notice_push(oauth_notice(challenge=None), ME)
    assert push is not None and push.header["challenge"] is None


def test_a_start_link_request_is_not_delivered_to_a_meshagent_participant() -> None:
    data = dict(oauth_notice(start_url="https://rooms.example/oauth/start?t=x").data)
    data.pop("challenge")
    assert notice_push(Notice("secrets.request_oauth_token", data), ME) is None


def test_a_secret_request_has_the_sdk_shape() -> None:
    notice = Notice("secrets.request_secret", {
        "request_id": "r1",
        "request": {"url": "secret://db", "type": "text/plain", "participant_id": ME, "timeout": 300.0, "delegate_to": "bob"},
        "from": {"id": "p-a", "identity": "a", "role": "user", "attributes": {}},
        "owner": "a", "usable_by": ["a", "bob"],
    })
    push = notice_push(notice, ME)
    assert push is not None and push.type == "secrets.request_secret"
    assert push.header == {"request_id": "r1", "request": {
        "url": "secret://db", "type": "text/plain", "participant_id": ME, "timeout": 300, "delegate_to": "bob"},
        "owner": "a", "usable_by": ["a", "bob"]}
    assert isinstance(push.header["request"]["timeout"], int)


def test_notices_without_a_meshagent_push_become_application_messages_from_the_participant_itself() -> None:
    for kind, data in (
        ("secrets.request_ended", {"request_id": "r1", "outcome": "timeout"}),
        ("secrets.oauth_reauth_required", {"id": "oidc", "connector": "oidc", "subject": "mona", "reason": "invalid_grant"}),
    ):
        push = notice_push(Notice(kind, data), ME)
        assert push is not None
        assert (push.type, push.header, push.trailer) == (
            "messaging.send", {"from_participant_id": ME, "type": kind, "message": data}, b"")


def test_other_notices_are_dropped() -> None:
    assert notice_push(Notice("something.else", {"x": 1}), ME) is None


def test_timeouts_round_up_to_whole_seconds() -> None:
    assert [whole_seconds(s) for s in (0.2, 1.0, 1.01, 300.0)] == [1, 1, 2, 300]
