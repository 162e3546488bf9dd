"""Prometheus metrics (prometheus_client lives only here). One registry per app, so
several servers in one test process do not collide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        # -- operations (issue 18): latencies, vault and OAuth outcomes, queues; docs/operations.md
        self.ops = OperationSeries(self.registry)
        # -- the fan-out between nodes (issues 15 and 18): always registered, set with cluster.enabled
        self.cluster = ClusterSeries(self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# -- operations (issue 18) ------------------------------------------------------------------------
#
# Every label value is bounded: a route template, a status class, a protocol, an operation
# name, an action or outcome name, a connector name from the configuration. Never an
# identity, a room, a secret id or a value. Values that come from elsewhere go through
# :class:`_Bounded`, so a bug upstream cannot grow a series without end.

#: request latencies: 1 ms .. 10 s, and ws operations that wait for a person up to 5 min
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WAITS = (*_LATENCY, 30.0, 60.0, 300.0)
_COMMIT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: label children kept per series, looked up without building labels again
_CACHED = 1024
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Bounded:
    """Label values seen so far, at most ``limit``; later new values become ``other``."""

    def __init__(self, limit: int) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit or not value.isprintable() or len(value) > 64:
            return "other"
        self._seen.add(value)
        return value


@dataclass(frozen=True)
class WsStats:
    """A connection's counters, already labelled with its protocol."""

    sent: Counter
    overflows: Counter
    closed_overflow: Counter
    closed_timeout: Counter


class OperationSeries:
    """The series of docs/operations.md, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.http_duration = Histogram(
            "roomsvc_http_request_duration_seconds", "HTTP requests by route template, method and status class",
            ["route", "method", "status_class"], buckets=_LATENCY, registry=r,
        )
        self.ws_frames_received = Counter(
            "roomsvc_ws_frames_received_total", "Websocket data frames received", ["protocol"], registry=r
        )
        self.ws_frames_sent = Counter("roomsvc_ws_frames_sent_total", "Websocket data frames sent", ["protocol"], registry=r)
        self.ws_request_duration = Histogram(
            "roomsvc_ws_request_duration_seconds", "Websocket requests by protocol and operation, from start to answer",
            ["protocol", "operation"], buckets=_WAITS, registry=r,
        )
        self.ws_queue_overflows = Counter(
            "roomsvc_ws_outbound_overflows_total", "Outbound queues that overflowed (the socket is closed 4030)",
            ["protocol"], registry=r,
        )
        self.ws_slow_consumer_closes = Counter(
            "roomsvc_ws_slow_consumer_closes_total", "Sockets closed as slow consumers: queue_overflow or send_timeout",
            ["protocol", "reason"], registry=r,
        )
        self.secret_operations = Counter(
            "roomsvc_secret_operations_total", "Audited vault operations by action, channel and outcome",
            ["action", "channel", "outcome"], registry=r,
        )
        self.header_resolutions = Counter(
            "roomsvc_header_resolutions_total", "Header resolutions by outcome (ok or the error name)", ["outcome"], registry=r
        )
        self.oauth_flows = Counter(
            "roomsvc_oauth_flows_total",
            "OAuth consent flows by connector and event: started, completed, rejected, timed_out, failed",
            ["connector", "event"], registry=r,
        )
        self.token_refreshes = Counter(
            "roomsvc_oauth_refreshes_total", "Refresh requests to providers by connector and outcome",
            ["connector", "outcome"], registry=r,
        )
        self.refresh_duration = Histogram(
            "roomsvc_oauth_refresh_duration_seconds", "Provider latency of refresh requests by connector",
            ["connector"], buckets=_LATENCY, registry=r,
        )
        self.write_batch = Histogram(
            "roomsvc_audit_writer_batch_size", "Writes (audit lines with their changes) per group commit",
            buckets=_BATCH, registry=r,
        )
        self.commit_duration = Histogram(
            "roomsvc_audit_writer_commit_seconds", "Time to run and commit one group of writes", buckets=_COMMIT, registry=r
        )
        self.write_queue = Gauge(
            "roomsvc_audit_writer_queue_depth", "Writes waiting for the group-commit writer", registry=r
        )
        self.storage_errors = Counter(
            "roomsvc_storage_errors_total", "Failed storage reads and write batches", ["operation"], registry=r
        )
        self.service_restarts = Counter(
            "roomsvc_service_restarts_total", "Room services started again, by reason (crash, renewal)", ["reason"],
            registry=r,
        )
        self.rotation_done = Gauge(
            "roomsvc_key_rotation_rewrapped", "Data keys re-wrapped by the current or last key rotation", registry=r
        )
        self.rotation_total = Gauge(
            "roomsvc_key_rotation_total_keys", "Data keys the current or last key rotation has to re-wrap", registry=r
        )
        self._actions, self._channels, self._outcomes = _Bounded(64), _Bounded(32), _Bounded(64)
        self._connectors = _Bounded(64)
        self._routes = _Bounded(128)
        self._http: dict[tuple[str, str, str], Histogram] = {}
        self._audited: dict[tuple[str, str, str], Counter] = {}

    def ws_stats(self, protocol: str) -> "WsStats":
        """One protocol's connection counters, bound once (the frame path does no label lookup)."""
        return WsStats(
            sent=self.ws_frames_sent.labels(protocol),
            overflows=self.ws_queue_overflows.labels(protocol),
            closed_overflow=self.ws_slow_consumer_closes.labels(protocol, "queue_overflow"),
            closed_timeout=self.ws_slow_consumer_closes.labels(protocol, "send_timeout"),
        )

    def watch_write_queue(self, depth: Callable[[], int]) -> None:
        self.write_queue.set_function(depth)

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # any token is a method to aiohttp: an unknown one must not grow the cache either
        key = (route, method if method in _METHODS else "other", str(status // 100) + "xx")
        child = self._http.get(key)
        if child is None:
            child = self._http[key] = self.http_duration.labels(self._routes(route), key[1], key[2])
        child.observe(seconds)

    def audited(self, action: str, channel: str, outcome: str) -> None:
        key = (action, channel, outcome)
        child = self._audited.get(key)
        if child is None:
            # a toolkit's channel is "headers:<toolkit>": the toolkit is a name callers choose
            child = self.secret_operations.labels(
                self._actions(action), self._channels(channel.partition(":")[0]), self._outcomes(outcome)
            )
            if len(self._audited) < _CACHED:  # the raw values are not bounded: neither would the cache be
                self._audited[key] = child
        child.inc()

    def header_resolution(self, outcome: str) -> None:
        self.header_resolutions.labels(self._outcomes(outcome)).inc()

    def oauth_flow(self, connector: str, event: str) -> None:
        self.oauth_flows.labels(self._connectors(connector), self._outcomes(event)).inc()

    def token_refresh(self, connector: str, outcome: str, seconds: float) -> None:
        name = self._connectors(connector)
        self.token_refreshes.labels(name, self._outcomes(outcome)).inc()
        self.refresh_duration.labels(name).observe(seconds)

    def key_rotation(self, done: int, total: int) -> None:
        self.rotation_done.set(done)
        self.rotation_total.set(total)

    def write_batch_done(self, jobs: int, seconds: float) -> None:
        self.write_batch.observe(jobs)
        self.commit_duration.observe(seconds)

    def storage_error(self, operation: str) -> None:
        self.storage_errors.labels(operation).inc()

    def service_restart(self, reason: str) -> None:
        self.service_restarts.labels(reason).inc()


# -- the fan-out between nodes (issues 15 and 18) ---------------------------------------------------

#: cross-node delivery: a local Redis round trip is well under a millisecond; seconds mean trouble
_DELIVERY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: the bus's event kinds (roomsvc/integrations/redis_bus.py); anything else counts as ``other``
_KINDS = frozenset({
    "message", "joined", "updated", "left", "ended", "completed", "call", "call_answer", "secret_request",
    "secret_answer", "consent_request", "revoked", "gone",
})
_FAILURES = frozenset({"redis", "unavailable", "encoding"})


class ClusterSeries:
    """A :class:`roomsvc.domain.observe.ClusterObserver` over Prometheus series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.published_total = Counter(
            "roomsvc_cluster_events_published_total", "Events sent to the other nodes, by kind", ["kind"], registry=r
        )
        self.received_total = Counter(
            "roomsvc_cluster_events_received_total", "Events received from the other nodes, by kind", ["kind"], registry=r
        )
        self.failures = Counter(
            "roomsvc_cluster_publish_failures_total",
            "Events not carried to the other nodes, by reason (redis, unavailable, encoding)", ["reason"], registry=r,
        )
        self.redis_up = Gauge(
            "roomsvc_cluster_redis_connected", "1 while this node is subscribed and beating in Redis, else 0", registry=r
        )
        self.alive = Gauge(
            "roomsvc_cluster_nodes_alive", "Nodes whose heartbeat is current, this one included", registry=r
        )
        self.lag = Histogram(
            "roomsvc_cluster_delivery_lag_seconds",
            "From the sender node stamping an event to its receipt here (wall clocks of two machines)",
            buckets=_DELIVERY, registry=r,
        )
        self._published = {k: self.published_total.labels(k) for k in (*_KINDS, "other")}
        self._received = {k: self.received_total.labels(k) for k in (*_KINDS, "other")}

    def published(self, kind: str) -> None:
        self._published.get(kind, self._published["other"]).inc()

    def received(self, kind: str, lag: float | None) -> None:
        self._received.get(kind, self._received["other"]).inc()
        if lag is not None:
            self.lag.observe(max(lag, 0.0))

    def publish_failed(self, reason: str, events: int) -> None:
        self.failures.labels(reason if reason in _FAILURES else "other").inc(events)

    def connected(self, up: bool) -> None:
        self.redis_up.set(1 if up else 0)

    def nodes_alive(self, count: int) -> None:
        self.alive.set(count)
