"""Prometheus metrics (prometheus_client lives only here). One registry per app, so
several servers in one test process do not collide."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "roomsvc_connections", "Open websocket connections", ["protocol"], registry=self.registry
        )
        self.rooms = Gauge("roomsvc_rooms_active", "Rooms with at least one participant present", registry=self.registry)
        self.participants = Gauge("roomsvc_participants", "Participants present", registry=self.registry)
        self.messages = Counter(
            "roomsvc_messages_total", "Messages and requests received", ["protocol", "kind"], registry=self.registry
        )
        self.errors = Counter(
            "roomsvc_errors_total", "Errors answered, by application error code", ["code"], registry=self.registry
        )
        self.closes = Counter(
            "roomsvc_ws_closes_total", "Websocket connections closed by the server, by close code", ["code"], registry=self.registry
        )
        # LLM proxy (calls forwarded by outcome, tokens by direction, refusals by error name;
        # never a model name or identity as a label: callers choose those)
        self.llm_requests = Counter(
            "roomsvc_llm_requests_total", "LLM proxy calls forwarded, by provider and outcome", ["provider", "outcome"],
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "roomsvc_llm_tokens_total", "LLM tokens used, by provider and direction (input/output)",
            ["provider", "direction"], registry=self.registry,
        )
        self.llm_refusals = Counter(
            "roomsvc_llm_refusals_total", "LLM proxy calls refused before the upstream, by provider and error",
            ["provider", "error"], registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
