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

    def render(self) -> bytes:
        return generate_latest(self.registry)
