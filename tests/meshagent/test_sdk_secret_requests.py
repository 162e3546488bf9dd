"""Secret requests between participants with the real MeshAgent SDK 0.44, and across protocols.

drivers/secret_requests_scenario.py runs three SDK participants (alice asks, bob answers,
carol meddles); the native client here asks bob and answers alice at the same time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import pytest

from tests.meshagent.sdk_peer import Driver, need_sdk
from tests.support.native_client import NativeClient
from tests.support.server import Server

ROOM = "request-room"


def requested_id(url: str, type: str) -> str:
    return "req:" + hashlib.sha256(f"{url}\n{type}".encode()).hexdigest()[:40]


@pytest.fixture(scope="module")
async def seen(server: Server) -> dict[str, Any]:
    """The scenario's result plus what the native side saw, from one driver run."""
    need_sdk()
    native = await NativeClient.connect(server.ws_url(ROOM), server.token("nora", ROOM, api=("secrets",)))
    driver = await Driver.start("secret_requests_scenario.py", {
        "url": server.url, "room": ROOM, "native_id": native.participant_id,
        "tokens": {name: server.token(name, ROOM, api=("secrets",)) for name in ("alice", "bob", "carol")},
    })
    try:
        ready = await driver.step("ready")
        # native -> SDK: nora asks bob, whose SDK handler answers
        asked = asyncio.get_running_loop().create_task(native.request("secrets.request_secret", {
            "url": "secret://for-native", "type": "text/plain", "from_participant_id": ready["bob_id"], "timeout": 15,
        }, timeout=20))
        # SDK -> native: alice asks nora, who answers in the native form
        push = (await native.next_event("secrets.request_secret", timeout=20))["data"]
        await native.request("secrets.provide_secret", {"request_id": push["request_id"], "text": "native-value"})
        answer = await asked
        result = (await driver.line(timeout=30))["result"]
    finally:
        await native.close()
        await driver.stop()
    return {**result, "native_push": push, "native_answer": answer, "alice_id": ready["alice_id"]}


def test_a_request_is_answered_by_another_sdk_client_and_stored_for_the_requester(seen: dict[str, Any]) -> None:
    assert seen["provided_same"] is True and seen["stored_same"] is True
    assert seen["listed"][0] == {"id": requested_id("secret://db", "text/plain"), "type": "text/plain",
                                 "name": "secret://db", "delegated_to": None, "agent_id": None}
    assert {"url": "secret://db", "type": "text/plain", "delegate_to": None} in seen["bob_saw"]


def test_a_reject_reaches_the_requester_with_its_reason(seen: dict[str, Any]) -> None:
    rejected = seen["rejected"]
    assert (rejected["ok"], rejected["code"]) == (False, 1011) and "cancelled" in rejected["text"]


def test_an_unanswered_request_times_out(seen: dict[str, Any]) -> None:
    assert (seen["timed_out"]["ok"], seen["timed_out"]["code"]) == (False, 1009)


def test_only_the_participant_asked_may_answer(seen: dict[str, Any]) -> None:
    assert (seen["carol_provides"]["ok"], seen["carol_provides"]["code"]) == (False, 1001)
    assert seen["stolen"] == {"ok": True, "value": "ok"}


def test_delegate_to_stores_the_answer_for_the_requester_delegated_to_that_identity(seen: dict[str, Any]) -> None:
    assert seen["delegated"]["ok"] is True
    assert {"url": "secret://for-carol", "type": "text/plain", "delegate_to": "carol"} in seen["bob_saw"]
    assert seen["carol_lists"] == []  # nothing was written into carol's namespace
    assert seen["carol_reads_delegated"] == "s3cret-" * 400  # what bob provided


def test_asking_nobody_is_not_found(seen: dict[str, Any]) -> None:
    assert (seen["nobody"]["ok"], seen["nobody"]["code"]) == (False, 1003)


def test_delete_requested_secret(seen: dict[str, Any]) -> None:
    assert seen["delete"]["ok"] is True
    assert (seen["delete_again"]["ok"], seen["delete_again"]["code"]) == (False, 1003)
    assert seen["listed_after"] == ["secret://for-carol", "secret://from-native", "secret://steal"]


def test_a_native_participant_answers_an_sdk_request(seen: dict[str, Any]) -> None:
    assert seen["from_native"] == {"ok": True, "value": "native-value"}
    push = seen["native_push"]
    assert push["request"] == {"url": "secret://from-native", "type": "text/plain",
                               "participant_id": push["request"]["participant_id"], "timeout": 15.0, "delegate_to": None}
    assert push["from"]["id"] == seen["alice_id"] and push["from"]["identity"] == "alice"


def test_an_sdk_participant_answers_a_native_request(seen: dict[str, Any]) -> None:
    answer = seen["native_answer"]
    assert base64.b64decode(answer["value"]) == b"from-sdk"
    assert answer["secret"]["id"] == requested_id("secret://for-native", "text/plain")
