"""Room secrets with the real MeshAgent SDK 0.44 (one driver run, checked step by step)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.meshagent.sdk_peer import need_sdk, run_driver
from tests.support.server import Server

ROOM = "vault-room"


@pytest.fixture(scope="module")
def seen(server: Server) -> dict[str, Any]:
    """What the SDK saw, running drivers/secrets_scenario.py once against the module's server."""
    need_sdk()
    api_key = server.cli("apikey", "--data-dir", str(server.data_dir)).stdout.decode().strip()
    assert api_key.startswith("ma-")
    return run_driver("secrets_scenario.py", {
        "url": server.url,
        "room": ROOM,
        "api_key": api_key,
        "tokens": {
            "alice": server.token("alice", ROOM, api=("secrets",)),
            "admin": server.token("admin", ROOM, api=("secrets", "admin")),
            "no_grant": server.token("nobody", ROOM, api=("messaging",)),
            "expired": server.token("alice", ROOM, api=("secrets",), exp=int(time.time()) - 3600),
            "wrong_room": server.token("alice", "another-room", api=("secrets",)),
            "garbage": "not-a-token",
        },
    })


def test_bad_tokens_get_403_at_the_upgrade_and_the_sdk_gives_up_at_once(seen: dict[str, Any]) -> None:
    for name, outcome in seen["refused"].items():
        assert not outcome["connected"], name
        assert "status 403" in outcome["text"], (name, outcome)
        assert outcome["seconds"] < 2, (name, outcome)  # a 401 would have been retried


def test_handshake_gives_the_local_participant_its_name(seen: dict[str, Any]) -> None:
    assert seen["alice_id"] and seen["alice_attributes"] == {"name": "alice"}


def test_set_and_get_a_multi_packet_value(seen: dict[str, Any]) -> None:
    assert seen["get_hit"] == {"name": "first", "mime_type": "text/plain", "same": True, "len": 3000}


def test_a_missing_secret_is_none(seen: dict[str, Any]) -> None:
    assert seen["get_miss"] == "None"
    assert seen["get_after_delete"] == "None"


def test_exists(seen: dict[str, Any]) -> None:
    assert seen["exists"] == [True, False]


def test_concurrent_requests_get_their_own_replies(seen: dict[str, Any]) -> None:
    assert seen["concurrent_same"] == [True] * 10


def test_get_by_type_and_name(seen: dict[str, Any]) -> None:
    assert seen["get_by_label"] is True


def test_list_gives_metadata_with_string_type_and_name(seen: dict[str, Any]) -> None:
    assert seen["list"] == [
        {"id": "s1", "type": "text/plain", "name": "first", "delegated_to": None},
        {"id": "s2", "type": "application/octet-stream", "name": "s2", "delegated_to": None},
    ]


def test_second_delete_is_not_found_1003(seen: dict[str, Any]) -> None:
    assert seen["delete_again"]["code"] == 1003 and seen["delete_again"]["error"] == "RoomException"


def test_for_identity_needs_the_admin_grant(seen: dict[str, Any]) -> None:
    refused = seen["for_identity_without_admin"]
    assert (refused["ok"], refused["code"]) == (False, 1001) and "admin" in refused["text"]
    assert seen["admin_for_identity"]["ok"] is True
    assert seen["admin_exists_for_bob"] is True


def test_no_secrets_grant_is_permission_denied(seen: dict[str, Any]) -> None:
    assert (seen["no_grant_list"]["ok"], seen["no_grant_list"]["code"]) == (False, 1001)


def test_sdk_minted_token_with_the_api_key_and_token_query_parameter(seen: dict[str, Any]) -> None:
    """bob's token comes from ParticipantToken.to_jwt(api_key=`roomsvc apikey`), sent as ?token=;
    bob reads what the admin stored for him and what alice delegated to him, and lists only his own."""
    assert seen["bob_reads_admin_set"] == "b0b"
    assert seen["bob_reads_delegated"] == "for bob"
    assert seen["bob_list"] == ["for-bob"]


def test_audit_names_the_meshagent_channel(seen: dict[str, Any], server: Server) -> None:
    done = server.cli("audit", "--room", ROOM, "--json", token=server.operator_token())
    assert done.returncode == 0, done.stderr
    assert b'"meshagent"' in done.stdout and b"b0b" not in done.stdout
