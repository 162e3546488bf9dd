"""Typed application keys: the wired services and state that handlers read."""

from __future__ import annotations

from aiohttp import web

from roomsvc.domain.services import Services
from roomsvc.transport.metrics import Metrics
from roomsvc.transport.telemetry import Telemetry
from roomsvc.transport.ws.connection import Connection

SERVICES = web.AppKey("services", Services)
METRICS = web.AppKey("metrics", Metrics)
CONNECTIONS = web.AppKey("connections", set[Connection])
READY = web.AppKey("ready", dict)
#: the metrics and the tracer together (issue 18: operations)
TELEMETRY = web.AppKey("telemetry", Telemetry)
