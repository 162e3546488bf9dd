"""Domain notices as MeshAgent pushes: pure values in, pushes out (no socket, no loop)."""

from __future__ import annotations

import json
from dataclasses import replace

from roomsvc.domain.events import (
    CredentialNeedsReauth,
    OAuthConsentRequested,
    ParticipantInfo,
    RequestEnded,
    SecretRequested,
)
from roomsvc.ids import Identity, ParticipantId
from roomsvc.transport.meshagent.notices import notice_push, whole_seconds

ME = "p-me"
AGENT = ParticipantInfo(ParticipantId("p-agent"), Identity("agent"), "agent", {})


def oauth_notice(**changes: object) -> OAuthConsentRequested:
    """A consent request as ConsentFlows builds it for a participant that runs its own redirect."""
    notice = OAuthConsentRequested(
        request_id="flow-1", connector="github",
        oauth={"client_id": "cid", "authorization_endpoint": "https://idp.example/auth",
               "token_endpoint": "https://idp.example/token", "scopes": ["openid"], "no_pkce": False,
               "client_secret": "must-not-leave"},
        participant_id=ParticipantId(ME), timeout=299.5, delegate_to=None,
        redirect_uri="https://app.example/oauth2/callback", requester=AGENT, expires_at=1700000300.0,
        owner=Identity("person"), usable_by=("agent", "person"), challenge="c" * 43,
    )
    return replace(notice, **changes)  # type: ignore[arg-type]


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
    notice = oauth_notice(start_url="https://rooms.example/oauth/start?t=x", challenge=None)
    assert notice_push(notice, ME) is None


def test_a_secret_request_has_the_sdk_shape() -> None:
    notice = SecretRequested(
        request_id="r1", url="secret://db", type="text/plain", participant_id=ParticipantId(ME), timeout=300.0,
        delegate_to=Identity("bob"), requester=ParticipantInfo(ParticipantId("p-a"), Identity("a"), "user", {}),
        owner=Identity("a"), usable_by=("a", "bob"),
    )
    push = notice_push(notice, ME)
    assert push is not None and push.type == "secrets.request_secret"
    assert push.header == {"request_id": "r1", "request": {
        "url": "secret://db", "type": "text/plain", "participant_id": ME, "timeout": 300, "delegate_to": "bob"},
        "owner": "a", "usable_by": ["a", "bob"]}
    assert isinstance(push.header["request"]["timeout"], int)


def test_notices_without_a_meshagent_push_become_application_messages_from_the_participant_itself() -> None:
    for notice, kind, data in (
        (RequestEnded("r1", "timeout"), "secrets.request_ended", {"request_id": "r1", "outcome": "timeout"}),
        (CredentialNeedsReauth("oidc", "oidc", "mona", "invalid_grant"), "secrets.oauth_reauth_required",
         {"id": "oidc", "connector": "oidc", "subject": "mona", "reason": "invalid_grant"}),
    ):
        push = notice_push(notice, ME)
        assert push is not None
        assert (push.type, push.header, push.trailer) == (
            "messaging.send", {"from_participant_id": ME, "type": kind, "message": data}, b"")


def test_timeouts_round_up_to_whole_seconds() -> None:
    assert [whole_seconds(s) for s in (0.2, 1.0, 1.01, 300.0)] == [1, 1, 2, 300]
