"""What an operator reads through Prometheus: traffic driven against a real roomsvc
(subprocess), a real OpenID provider and Debian's Prometheus scraping every second,
read back through Prometheus' HTTP API.

The module's server is its own (tests/oauth's ``oauth_env`` is module-scoped), so the
counts below are exact: each is what this module's traffic made, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.oauth.conftest import ACCESS_TOKEN_TTL, REFRESH_MARGIN, OAuthEnv
from tests.oauth.flows import ask, error_of, run_flow
from tests.ops.conftest import Prometheus
from tests.support.waiting import until

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "roomsvc.json"
#: a secret value that must never show up in a label
CANARY = "canary-ops-9f1c2e"
MESSAGES = 3


@pytest.fixture(scope="module")
async def traffic(oauth_env: OAuthEnv, prometheus: Prometheus) -> dict[str, Any]:
    """Messages, secret reads and a refused read, header resolutions, an OAuth flow and a refresh."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with oauth_env.agent_and_person("pat") as (agent_id, person_id, agent, person):
            for i in range(MESSAGES):
                await agent.request("message.send", {"to": person.participant_id, "message_type": "chat", "body": {"n": i}})
            await person.request("secrets.set", {"id": "ops-secret", "text": CANARY})
            for _ in range(2):
                await person.request("secrets.get", {"id": "ops-secret"})
            refused = await error_of(agent.request("secrets.get", {"id": "ops-secret", "for_identity": person_id}))
            await person.request("headers.resolve", {"header_secrets": ["X-Key:{ops-secret}"]})
            missing = await error_of(person.request("headers.resolve", {"header_secrets": ["X-Key:{no-such}"]}))
            # a flow nobody answers in time, one the person declines, then one completed
            task, _ = await ask(agent, person, timeout=0.5)
            timed_out = await error_of(task)
            task, push = await ask(agent, person, timeout=10)
            await person.request("secrets.reject_oauth_authorization", {"request_id": push["request_id"], "error": "no"})
            rejected = await error_of(task)
            granted, _ = await run_flow(browser, agent, person, person_id)
            # roomsvc refreshes by its own clock: wait (real time, a subprocess) until the
            # token is within the refresh margin, then use it
            await asyncio.sleep(ACCESS_TOKEN_TTL - REFRESH_MARGIN + 0.3)
            again = await agent.request(
                "secrets.get_offline_oauth_token", {"connector": "oidc", "delegated_by": person_id}, timeout=30
            )
        # an operator rotates the master key online: the progress gauges follow it
        async with browser.post(f"{oauth_env.server.url}/v1/admin/keys/rotate",
                                headers={"Authorization": f"Bearer {oauth_env.server.operator_token()}"}) as r:
            assert r.status == 200, await r.text()
            await r.read()
    return {"refused": refused, "timed_out": timed_out, "rejected": rejected, "missing": missing, "granted": granted, "again": again,
            "identities": (agent_id, person_id)}


async def _expect(prom: Prometheus, promql: str, expected: float) -> None:
    """Wait for the next scrapes to show ``expected`` (the bound only fails, it never times)."""
    seen: list[float | None] = []

    async def reached() -> bool:
        seen.append(await prom.value(promql))
        return seen[-1] == expected

    await until(reached, f"{promql} == {expected} (last seen {seen[-1:]})", within=30, poll=0.5)


async def test_prometheus_scrapes_roomsvc(prometheus: Prometheus, traffic: dict[str, Any]) -> None:
    await _expect(prometheus, 'up{job="roomsvc"}', 1)


async def test_messages_and_ws_operations(prometheus: Prometheus, traffic: dict[str, Any]) -> None:
    await _expect(prometheus, 'roomsvc_messages_total{protocol="native",kind="message.send"}', MESSAGES)
    await _expect(prometheus, 'roomsvc_ws_request_duration_seconds_count{protocol="native",operation="message.send"}', MESSAGES)
    # one data frame per request in: the messages, the vault calls, the flow's request, the refresh
    assert (await prometheus.value('roomsvc_ws_frames_received_total{protocol="native"}') or 0) >= MESSAGES + 7
    assert (await prometheus.value('roomsvc_ws_frames_sent_total{protocol="native"}') or 0) >= MESSAGES + 7


async def test_secret_reads_and_the_refused_read(prometheus: Prometheus, traffic: dict[str, Any]) -> None:
    assert traffic["refused"] == "permission_denied"
    await _expect(prometheus, 'roomsvc_secret_operations_total{action="read",channel="ws",outcome="ok"}', 2)
    await _expect(prometheus, 'roomsvc_secret_operations_total{action="read",channel="ws",outcome="denied"}', 1)
    await _expect(prometheus, 'sum(roomsvc_secret_operations_total{action="create",outcome="ok"})', 2)  # the set, the credential


async def test_header_resolutions_by_outcome(prometheus: Prometheus, traffic: dict[str, Any]) -> None:
    assert traffic["missing"] == "not_found"
    await _expect(prometheus, 'roomsvc_header_resolutions_total{outcome="ok"}', 1)
    await _expect(prometheus, 'roomsvc_header_resolutions_total{outcome="not_found"}', 1)


async def test_the_oauth_flow_and_the_refresh(prometheus: Prometheus, traffic: dict[str, Any]) -> None:
    assert traffic["again"]["access_token"] != traffic["granted"]["access_token"]  # it was refreshed
    assert (traffic["timed_out"], traffic["rejected"]) == ("timeout", "rejected")
    await _expect(prometheus, 'roomsvc_oauth_flows_total{connector="oidc",event="started"}', 3)
    await _expect(prometheus, 'roomsvc_oauth_flows_total{connector="oidc",event="completed"}', 1)
    await _expect(prometheus, 'roomsvc_oauth_flows_total{connector="oidc",event="timed_out"}', 1)
    await _expect(prometheus, 'roomsvc_oauth_flows_total{connector="oidc",event="rejected"}', 1)
    assert await prometheus.value('roomsvc_oauth_flows_total{event="failed"}') is None
    await _expect(prometheus, 'roomsvc_oauth_refreshes_total{connector="oidc",outcome="ok"}', 1)
    await _expect(prometheus, 'roomsvc_oauth_refresh_duration_seconds_count{connector="oidc"}', 1)
    latency = await prometheus.value('roomsvc_oauth_refresh_duration_seconds_sum{connector="oidc"}')
    assert latency is not None and latency > 0
    # the browser's two steps, by route template and status class
    await _expect(prometheus, 'sum(roomsvc_http_request_duration_seconds_count{route="/oauth/callback",status_class="2xx"})', 1)
    await _expect(prometheus, 'roomsvc_http_request_duration_seconds_count{route="/oauth/start",method="POST",status_class="3xx"}', 1)


async def test_the_audit_writer(prometheus: Prometheus, traffic: dict[str, Any]) -> None:
    batches = await prometheus.value("roomsvc_audit_writer_batch_size_count")
    writes = await prometheus.value("roomsvc_audit_writer_batch_size_sum")
    assert batches is not None and writes is not None and writes >= batches >= 5
    assert await prometheus.value("roomsvc_audit_writer_commit_seconds_count") == batches
    assert await prometheus.value("roomsvc_audit_writer_queue_depth") == 0
    assert await prometheus.value("sum(roomsvc_storage_errors_total)") is None  # none happened (no series yet)


async def test_no_label_names_a_room_an_identity_a_secret_or_a_value(prometheus: Prometheus, traffic: dict[str, Any]) -> None:
    series = await prometheus.query('{__name__=~"roomsvc_.+"}')
    assert len(series) > 20
    banned = [*traffic["identities"], "room1", "ops-secret", CANARY, traffic["granted"]["access_token"]]
    for s in series:
        for label, value in s["metric"].items():
            assert not any(b in value for b in banned), (label, value)


def _dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", []) if t.get("expr")]
    assert exprs, "the dashboard has no queries"
    return exprs


async def test_every_dashboard_query_names_an_exported_metric_and_runs(
    oauth_env: OAuthEnv, prometheus: Prometheus, traffic: dict[str, Any]
) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{oauth_env.server.url}/metrics") as r:
        exposition = await r.text()
    exported: set[str] = set()
    suffixes = {"counter": ("",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    # text format 0.0.4: a counter's TYPE line names it with its _total, a histogram without suffix
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        exported.update(name + suffix for suffix in suffixes.get(kind, ("",)))
    for expr in _dashboard_queries():
        names = set(re.findall(r"\broomsvc_[a-z_]+", expr))
        assert names, f"query names no roomsvc metric: {expr}"
        assert names <= exported, f"{expr} names {sorted(names - exported)}, which roomsvc does not export"
        # and Prometheus itself accepts it (Grafana's interval variable filled in)
        await prometheus.query(expr.replace("$__rate_interval", "1m"))


async def test_key_rotation_progress(prometheus: Prometheus, traffic: dict[str, Any]) -> None:
    await _expect(prometheus, 'roomsvc_secret_operations_total{action="keys.rotate",channel="admin",outcome="ok"}', 1)
    total = await prometheus.value("roomsvc_key_rotation_total_keys")
    assert total is not None and total >= 2  # the secret and the credential, at least
    await _expect(prometheus, "roomsvc_key_rotation_rewrapped", total)
