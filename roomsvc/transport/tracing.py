"""OpenTelemetry traces (the opentelemetry packages live only here). Off by default.

``telemetry.traces_exporter`` (``OTEL_TRACES_EXPORTER``) turns them on: ``otlp`` sends
spans over OTLP/HTTP to ``telemetry.otlp_endpoint`` (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_ENDPOINT``; the exporter reads its other ``OTEL_EXPORTER_OTLP_*``
variables, headers and timeouts, itself), ``console`` prints them. ``OTEL_SDK_DISABLED``
keeps them off. Each app has its own provider: nothing is installed globally, so
several servers in one test process do not mix their spans.

Why not ``opentelemetry-instrumentation-aiohttp-server``: it records the whole URL of a
request (``http.target``/``url.query``), and ``/oauth/callback?code=...&state=...``
carries an authorization code. roomsvc's middleware
(:mod:`roomsvc.transport.http.observe`) records the route template instead.

Exceptions leaving a span mark it failed with the error's *name*; neither the message nor
the stack goes into an event (``record_exception=False``): a span carries no value.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from roomsvc.domain.observe import AttributeValue
from roomsvc.errors import RoomsvcError

log = logging.getLogger("roomsvc.tracing")

#: span attributes that roomsvc names itself get this prefix (``roomsvc.room``); the
#: HTTP ones follow OpenTelemetry's semantic conventions (``http.route``)
PREFIX = "roomsvc."


class _Span:
    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key if "." in key else PREFIX + key, value)

    def fail(self, error_name: str) -> None:
        self._span.set_attribute("error.type", error_name)
        self._span.set_status(Status(StatusCode.ERROR, error_name))


def error_name(exc: BaseException) -> str:
    return exc.name if isinstance(exc, RoomsvcError) else type(exc).__name__


class Tracing:
    """A tracer over one provider, or none (then :attr:`enabled` is False and nobody calls it)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.enabled = provider is not None
        self._tracer = provider.get_tracer("roomsvc") if provider is not None else trace.NoOpTracer()

    @classmethod
    def from_settings(cls, *, exporter: str, endpoint: str, service_name: str) -> "Tracing":
        if exporter == "none":
            return cls()
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        provider.add_span_processor(BatchSpanProcessor(_exporter(exporter, endpoint)))
        log.info("tracing on: %s exporter%s", exporter, f" to {endpoint}" if endpoint else "")
        return cls(provider)

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, AttributeValue], *, kind: SpanKind = SpanKind.INTERNAL,
             headers: Mapping[str, str] | None = None) -> Iterator[_Span]:
        """A span, current inside the block; ``headers`` carry the caller's ``traceparent``."""
        parent = extract(headers) if headers is not None else None
        with self._tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes={k if "." in k else PREFIX + k: v for k, v in attributes.items()},
            record_exception=False, set_status_on_exception=False,
        ) as otel_span:
            span = _Span(otel_span)
            try:
                yield span
            except GeneratorExit:
                raise
            except BaseException as exc:
                span.fail(error_name(exc))
                raise

    def current_ids(self) -> tuple[str, str] | None:
        """The current trace and span ids as hex, for log lines; None outside a span."""
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")

    def shutdown(self) -> None:
        """Flush and stop the exporter (at server shutdown)."""
        if self.provider is not None:
            self.provider.shutdown()


def _exporter(kind: str, endpoint: str) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # an empty endpoint: the exporter's own default (OTEL_EXPORTER_OTLP_* or localhost:4318)
    return OTLPSpanExporter(endpoint=endpoint or None)
