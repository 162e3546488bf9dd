"""The refresh policy with fakes behind the same ports: no network, no sleeps."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from typing import Any

import pytest

from roomsvc.clock import FakeClock
from roomsvc.domain.oauth.credentials import (
    REAUTH_REQUIRED,
    OAuthCredential,
    TokenResponse,
    apply_refresh,
    backoff_delays,
    expiry,
)
from roomsvc.domain.oauth.ports import ClientAuth
from roomsvc.domain.oauth.refresh import LocalLocks, Refresher, StoredCredential
from roomsvc.domain.secrets import Address
from roomsvc.errors import OAuthError, ProviderUnavailable, ReauthRequired
from roomsvc.ids import Identity, RoomName, SecretId
from tests.support.fakes import FakeProvider, FakeVault

ADDR = Address(RoomName("r"), Identity("p"), SecretId("c"), None)


def make(provider: FakeProvider, cred: OAuthCredential, clock: FakeClock, **kw: Any) -> tuple[Refresher, FakeVault, list]:
    vault = FakeVault(cred)
    sleeps: list[float] = []
    reauth: list[str] = []

    async def sleep(d: float) -> None:
        sleeps.append(d)

    async def client_auth(c: OAuthCredential) -> ClientAuth:
        return ClientAuth("client")

    async def on_reauth(stored: StoredCredential, reason: str) -> None:
        reauth.append(reason)

    refresher = Refresher(
        vault=vault, provider=provider, lock=LocalLocks(), clock=clock, client_auth=client_auth,  # type: ignore[arg-type]
        on_reauth=on_reauth, margin=60, assumed_lifetime=3600, delays=kw.get("delays", [0.5, 1.0]), sleep=sleep,
    )
    return refresher, vault, [sleeps, reauth]


def cred(clock: FakeClock, *, expires_in: float, refresh: str | None = "rt1") -> OAuthCredential:
    return OAuthCredential(access_token="at1", refresh_token=refresh, expires_at=clock.now() + expires_in, token_endpoint="t")


async def test_a_usable_credential_is_not_refreshed() -> None:
    clock = FakeClock()
    provider = FakeProvider(TokenResponse("at2"))
    refresher, vault, _ = make(provider, cred(clock, expires_in=600), clock)
    assert (await refresher.fresh(ADDR)).credential.access_token == "at1"
    assert provider.calls == [] and vault.writes == 0


async def test_fifty_concurrent_callers_share_one_refresh() -> None:
    clock = FakeClock()
    provider = FakeProvider(TokenResponse("at2", expires_in=600, refresh_token="rt2"))
    refresher, vault, _ = make(provider, cred(clock, expires_in=-1), clock)
    results = await asyncio.gather(*(refresher.fresh(ADDR) for _ in range(50)))
    assert provider.calls == ["rt1"]
    assert {r.credential.access_token for r in results} == {"at2"}
    assert vault.writes == 1 and vault.credential.refresh_token == "rt2"


async def test_a_response_without_a_refresh_token_keeps_the_old_one_and_expiry_is_inferred() -> None:
    clock = FakeClock()
    refresher, vault, _ = make(FakeProvider(TokenResponse("at2")), cred(clock, expires_in=30), clock)
    fresh = await refresher.fresh(ADDR)
    assert fresh.credential.refresh_token == "rt1"
    assert fresh.credential.expires_at == clock.now() + 3600  # no expires_in, not a JWT: assumed lifetime
    jwt = "x." + base64.urlsafe_b64encode(json.dumps({"exp": clock.now() + 120}).encode()).decode().rstrip("=") + ".y"
    assert expiry(TokenResponse(jwt), clock.now(), 3600) == clock.now() + 120


async def test_transient_errors_are_retried_with_bounded_backoff() -> None:
    clock = FakeClock()
    provider = FakeProvider(ProviderUnavailable("503"), ProviderUnavailable("timeout"), TokenResponse("at2", expires_in=600))
    refresher, vault, (sleeps, _) = make(provider, cred(clock, expires_in=-1), clock)
    assert (await refresher.fresh(ADDR)).credential.access_token == "at2"
    assert sleeps == [0.5, 1.0] and len(provider.calls) == 3
    assert backoff_delays(10, 1.0)[-1] == 30.0


async def test_transient_errors_never_destroy_the_credential() -> None:
    clock = FakeClock()
    # still valid (inside the margin): keep using it
    refresher, vault, _ = make(FakeProvider(ProviderUnavailable("503")), cred(clock, expires_in=30), clock)
    assert (await refresher.fresh(ADDR)).credential.access_token == "at1"
    assert vault.writes == 0
    # expired: a typed, retryable error; the credential is untouched
    refresher, vault, (_, reauth) = make(FakeProvider(ProviderUnavailable("503")), cred(clock, expires_in=-1), clock)
    with pytest.raises(ProviderUnavailable):
        await refresher.fresh(ADDR)
    assert vault.writes == 0 and vault.credential.status == "active" and reauth == []


async def test_invalid_grant_marks_reauth_required_once_and_tells_the_owner() -> None:
    clock = FakeClock()
    provider = FakeProvider(OAuthError("refused", error="invalid_grant"))
    refresher, vault, (_, reauth) = make(provider, cred(clock, expires_in=-1), clock)
    with pytest.raises(ReauthRequired):
        await refresher.fresh(ADDR)
    assert vault.credential.status == REAUTH_REQUIRED and len(reauth) == 1
    with pytest.raises(ReauthRequired):
        await refresher.fresh(ADDR)
    assert len(provider.calls) == 1


async def test_invalid_grant_after_someone_else_refreshed_is_a_lost_race() -> None:
    clock = FakeClock()
    provider = FakeProvider(OAuthError("refused", error="invalid_grant"))
    refresher, vault, (_, reauth) = make(provider, cred(clock, expires_in=-1), clock)
    original = provider.refresh

    async def racing(*a: Any, **kw: Any) -> TokenResponse:
        # another node refreshes (and writes) while our request is in flight
        vault.credential = replace(vault.credential, access_token="other", expires_at=clock.now() + 600)
        vault.version += 1
        return await original(*a, **kw)

    provider.refresh = racing  # type: ignore[method-assign]
    assert (await refresher.fresh(ADDR)).credential.access_token == "other"
    assert reauth == [] and vault.credential.status == "active"


async def test_other_provider_refusals_leave_the_credential_alone() -> None:
    clock = FakeClock()
    refresher, vault, _ = make(FakeProvider(OAuthError("refused", error="invalid_client")), cred(clock, expires_in=-1), clock)
    with pytest.raises(OAuthError):
        await refresher.fresh(ADDR)
    assert vault.writes == 0


def test_no_expiry_at_all_and_odd_expires_in_values_give_a_sane_schedule() -> None:
    now = 1000.0
    for raw, expected in ((None, now + 3600), (0, now + 3600), (-1, now + 3600), ("3600", now + 3600),
                          (10**12, now + 365 * 86400), ("soon", now + 3600), (True, now + 3600)):
        response = TokenResponse.from_json({"access_token": "a", "token_type": "bearer", "expires_in": raw})
        assert expiry(response, now, 3600) == expected, raw
    merged = apply_refresh(OAuthCredential("a", "r", scopes=("x",)), TokenResponse("b"), now, 60)
    assert merged.refresh_token == "r" and merged.scopes == ("x",)
