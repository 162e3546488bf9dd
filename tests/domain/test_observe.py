"""What the domain reports through its Observer port, with a recording observer and the
fakes of tests/support/fakes.py: no network, no sleeps. The transport's Prometheus and
OpenTelemetry side is tested end to end in tests/ops."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from roomsvc.clock import FakeClock
from roomsvc.domain.oauth.credentials import OAuthCredential, TokenResponse
from roomsvc.domain.oauth.ports import ClientAuth
from roomsvc.domain.oauth.refresh import LocalLocks, Refresher, StoredCredential
from roomsvc.domain.observe import NOOP, AttributeValue
from roomsvc.domain.secrets import Address
from roomsvc.errors import OAuthError, ProviderUnavailable, ReauthRequired, RoomsvcError
from roomsvc.ids import Identity, RoomName, SecretId
from tests.support.fakes import FakeProvider, FakeVault

ADDR = Address(RoomName("r"), Identity("p"), SecretId("c"), None)


class RecordingSpan:
    def __init__(self, name: str, attributes: dict[str, AttributeValue]) -> None:
        self.name, self.attributes, self.failed = name, attributes, None

    def set(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def fail(self, error_name: str) -> None:
        self.failed = error_name


class RecordingObserver:
    def __init__(self) -> None:
        self.spans: list[RecordingSpan] = []
        self.events: list[tuple[Any, ...]] = []

    @contextmanager
    def span(self, name: str, **attributes: AttributeValue) -> Iterator[RecordingSpan]:
        span = RecordingSpan(name, dict(attributes))
        self.spans.append(span)
        try:
            yield span
        except RoomsvcError as exc:
            span.fail(exc.name)
            raise

    def __getattr__(self, method: str) -> Any:
        return lambda *args: self.events.append((method, *args))


def refresher(provider: FakeProvider, clock: FakeClock, observer: Any) -> Refresher:
    async def client_auth(c: OAuthCredential) -> ClientAuth:
        return ClientAuth("client")

    async def on_reauth(stored: StoredCredential, reason: str) -> None:
        return None

    expiring = OAuthCredential(access_token="at1", refresh_token="rt1", expires_at=clock.now() + 1, token_endpoint="t",
                               connector="gh")
    return Refresher(
        vault=FakeVault(expiring), provider=provider, lock=LocalLocks(), clock=clock,  # type: ignore[arg-type]
        client_auth=client_auth, on_reauth=on_reauth, margin=60, assumed_lifetime=3600, delays=[0.5, 1.0],
        sleep=lambda d: _nothing(), observer=observer,
    )


async def _nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("answers", "outcomes", "raised"),
    [
        ([TokenResponse("at2", expires_in=600)], ["ok"], None),
        ([ProviderUnavailable("503"), ProviderUnavailable("timeout"), TokenResponse("at2", expires_in=600)],
         ["unavailable", "unavailable", "ok"], None),
        ([OAuthError("refused", error="invalid_grant")], ["invalid_grant"], ReauthRequired),
        ([OAuthError("refused", error="invalid_scope")], ["error"], OAuthError),
    ],
)
async def test_each_refresh_request_is_counted_by_outcome_and_traced(
    answers: list[Any], outcomes: list[str], raised: type[Exception] | None
) -> None:
    clock, observer = FakeClock(), RecordingObserver()
    r = refresher(FakeProvider(*answers), clock, observer)
    if raised is None:
        await r.fresh(ADDR)
    else:
        with pytest.raises(raised):
            await r.fresh(ADDR)
    assert [e[1:3] for e in observer.events if e[0] == "token_refresh"] == [("gh", o) for o in outcomes]
    spans = [s for s in observer.spans if s.name == "oauth.refresh"]
    assert [s.attributes for s in spans] == [{"room": "r", "operation": "refresh", "connector": "gh"}] * len(outcomes)
    assert [s.failed for s in spans] == [None if o == "ok" else ("oauth_error" if o != "unavailable" else "provider_unavailable")
                                         for o in outcomes]


def test_the_default_observer_does_nothing() -> None:
    with NOOP.span("x", room="r") as span:
        span.set("a", 1)
        span.fail("e")
    NOOP.audited("read", "ws", "ok")
    NOOP.token_refresh("gh", "ok", 0.1)
