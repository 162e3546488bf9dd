"""The domain's :class:`~roomsvc.domain.observe.Observer`, over the app's Prometheus
series and its tracer: the one object the composition root hands to every service.

``detailed`` off (``telemetry.metrics = false``) keeps only the six basic series; tracing
off makes every span a shared no-op object. Either way a call costs a branch.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Mapping

from roomsvc.domain.observe import NO_CLUSTER, AttributeValue, ClusterObserver, NoObserver, Span
from roomsvc.transport.metrics import Metrics
from roomsvc.transport.tracing import SpanKind, Tracing

_OFF = NoObserver()


class Telemetry:
    def __init__(self, metrics: Metrics, tracing: Tracing, *, detailed: bool = True) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.detailed = detailed
        #: the detailed series, or None when they are off (callers test it once)
        self.ops = metrics.ops if detailed else None
        #: what the Redis bus counts (issues 15 and 18): nothing when the detailed series are off
        self.cluster: ClusterObserver = metrics.cluster if detailed else NO_CLUSTER

    # -- spans ---------------------------------------------------------------------------------

    def span(self, name: str, **attributes: AttributeValue) -> AbstractContextManager[Span]:
        if not self.tracing.enabled:
            return _OFF.span(name)
        return self.tracing.span(name, attributes)

    def server_span(
        self, name: str, headers: Mapping[str, str], **attributes: AttributeValue
    ) -> AbstractContextManager[Span]:
        """An HTTP request's span, continuing the caller's trace (``traceparent``)."""
        if not self.tracing.enabled:
            return _OFF.span(name)
        return self.tracing.span(name, attributes, kind=SpanKind.SERVER, headers=headers)

    # -- the domain's outcomes -------------------------------------------------------------------

    def audited(self, action: str, channel: str, outcome: str) -> None:
        if self.ops is not None:
            self.ops.audited(action, channel, outcome)

    def header_resolution(self, outcome: str) -> None:
        if self.ops is not None:
            self.ops.header_resolution(outcome)

    def oauth_flow(self, connector: str, event: str) -> None:
        if self.ops is not None:
            self.ops.oauth_flow(connector, event)

    def token_refresh(self, connector: str, outcome: str, seconds: float) -> None:
        if self.ops is not None:
            self.ops.token_refresh(connector, outcome, seconds)

    def key_rotation(self, done: int, total: int) -> None:
        if self.ops is not None:
            self.ops.key_rotation(done, total)

    def write_batch(self, jobs: int, seconds: float) -> None:
        if self.ops is not None:
            self.ops.write_batch_done(jobs, seconds)

    def storage_error(self, operation: str) -> None:
        # failures are always counted: they are rare and an operator needs them
        self.metrics.ops.storage_error(operation)

    def service_restart(self, reason: str) -> None:
        # rare, and a crash loop is what an operator must see: always counted
        self.metrics.ops.service_restart(reason)
