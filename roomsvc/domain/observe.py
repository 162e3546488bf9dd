"""What the domain tells an operator: outcomes to count and spans to trace, through one port.

The domain knows neither Prometheus nor OpenTelemetry. It calls an :class:`Observer`;
the composition root passes one that the transport builds over its metrics and its
tracer (:mod:`roomsvc.transport.telemetry`), and everything else gets :data:`NOOP`.

The rules every implementation relies on, and every caller keeps:

* labels are bounded: an action, an outcome, an error name, a connector name from the
  configuration; never an identity, a room, a secret id, a flow id or a value;
* span attributes carry where and what (``room``, ``operation``, ``connector``, an
  outcome), never a secret value, token, code, state or verifier.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

AttributeValue = str | int | float | bool


class Span(Protocol):
    def set(self, key: str, value: AttributeValue) -> None:
        """Add an attribute (see the module rules: never a value, token or code)."""

    def fail(self, error_name: str) -> None:
        """Mark the span failed with an error's name (``not_found``, ``oauth_error``...)."""


class Observer(Protocol):
    def span(self, name: str, **attributes: AttributeValue) -> AbstractContextManager[Span]:
        """A span around a step; an exception leaving it marks it failed by its type's name."""

    def audited(self, action: str, channel: str, outcome: str) -> None:
        """An audit line was recorded (every secret operation writes one)."""

    def header_resolution(self, outcome: str) -> None:
        """A header resolution ended: ``ok`` or the error's name."""

    def oauth_flow(self, connector: str, event: str) -> None:
        """A consent flow was ``started`` or ended (``completed``, ``rejected``, ``expired``, ``failed``)."""

    def token_refresh(self, connector: str, outcome: str, seconds: float) -> None:
        """One refresh request to a provider: ``ok``, ``invalid_grant``, ``unavailable`` or ``error``."""

    def key_rotation(self, done: int, total: int) -> None:
        """Progress of a master key rotation: data keys re-wrapped out of all."""

    def write_batch(self, jobs: int, seconds: float) -> None:
        """The store committed one group of writes (audit lines with the changes they record)."""

    def storage_error(self, operation: str) -> None:
        """A storage ``read`` or ``write`` (a whole batch) failed."""

    def service_restart(self, reason: str) -> None:
        """A room service was started again: ``crash`` (it exited) or ``renewal`` (fresh tokens)."""


class _NoSpan:
    __slots__ = ()

    def __enter__(self) -> "_NoSpan":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: AttributeValue) -> None:
        return None

    def fail(self, error_name: str) -> None:
        return None


_NO_SPAN = _NoSpan()


class NoObserver:
    """Counts nothing, traces nothing: the default of every service (and unit tests)."""

    def span(self, name: str, **attributes: AttributeValue) -> AbstractContextManager[Span]:
        return _NO_SPAN

    def audited(self, action: str, channel: str, outcome: str) -> None:
        return None

    def header_resolution(self, outcome: str) -> None:
        return None

    def oauth_flow(self, connector: str, event: str) -> None:
        return None

    def token_refresh(self, connector: str, outcome: str, seconds: float) -> None:
        return None

    def key_rotation(self, done: int, total: int) -> None:
        return None

    def write_batch(self, jobs: int, seconds: float) -> None:
        return None

    def storage_error(self, operation: str) -> None:
        return None

    def service_restart(self, reason: str) -> None:
        return None


NOOP: Observer = NoObserver()


# -- the fan-out between nodes (issues 15 and 18) -----------------------------------------------


class ClusterObserver(Protocol):
    """What the Redis bus tells an operator (docs/operations.md, "Several nodes").

    ``kind`` is an event kind of the bus's wire format (``message``, ``joined``...), a
    fixed set; the sender's node id is never a label (nodes come and go).
    """

    def published(self, kind: str) -> None:
        """One event was sent to the other nodes."""

    def received(self, kind: str, lag: float | None) -> None:
        """One event from another node arrived, ``lag`` seconds after its sender stamped it."""

    def publish_failed(self, reason: str, events: int) -> None:
        """Events not carried: ``redis`` (the round trip failed), ``unavailable`` (Redis was
        away when they were made) or ``encoding`` (not JSON)."""

    def connected(self, up: bool) -> None:
        """The node's link to Redis (subscribed and beating) is up or down."""

    def nodes_alive(self, count: int) -> None:
        """Nodes whose heartbeat is current, this one included."""


class NoClusterObserver:
    def published(self, kind: str) -> None:
        return None

    def received(self, kind: str, lag: float | None) -> None:
        return None

    def publish_failed(self, reason: str, events: int) -> None:
        return None

    def connected(self, up: bool) -> None:
        return None

    def nodes_alive(self, count: int) -> None:
        return None


NO_CLUSTER: ClusterObserver = NoClusterObserver()
