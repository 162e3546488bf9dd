"""The LLM proxy's service: admit a call (grant, rate, budget), hand the transport the
provider key, settle the call (usage row + audit line), report usage to operators.

The provider key is read from a project ``keys`` secret through
:class:`~roomsvc.domain.project_secrets.ProjectSecretService`'s resolver, under the
server's own authority (``service:llm-proxy`` in the audit log), never the caller's, and
kept in memory for ``key_cache_ttl`` seconds so a rotated key is picked up. It is held as
a :class:`~roomsvc.ids.SecretStr` and never enters an error, a log line or the audit log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Awaitable, Mapping

from roomsvc.clock import Clock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.llm import budget as b
from roomsvc.domain.llm.grant import Endpoint, decide
from roomsvc.domain.llm.ports import UsageRepository, UsageRow, UsageSummary
from roomsvc.domain.llm.usage import Usage
from roomsvc.domain.policy import Outcome
from roomsvc.domain.principal import Principal
from roomsvc.domain.project_secrets import ProjectSecretService
from roomsvc.domain.ratelimit import Rate, TokenBuckets
from roomsvc.errors import (
    BudgetExceeded,
    DependencyMissing,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
)
from roomsvc.ids import SecretStr

#: who reads provider keys, in the audit log
KEY_READER = "llm-proxy"


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    base_url: str
    #: the project keys secret and the key inside it that hold the provider key
    secret_id: str
    key_name: str
    #: model patterns allowed on this server (empty = any)
    models: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.base_url and self.secret_id and self.key_name)


@dataclass(frozen=True)
class LlmConfig:
    providers: Mapping[str, ProviderConfig]
    budgets: b.Budgets = b.Budgets()
    #: requests per identity and room: ``rate`` a second, ``burst`` at once (rate 0 = off)
    requests: Rate = Rate(0.0, 1)
    max_buckets: int = 100000
    key_cache_ttl: float = 60.0
    leeway: float = 0.0
    #: the transport's limits: request body size, JSON answer kept for its usage, client checks
    max_body_size: int = 4194304
    max_usage_scan: int = 8388608
    disconnect_check_interval: float = 0.5


@dataclass(frozen=True)
class _Place:
    room: str | None
    owner: str | None
    id: str


@dataclass(frozen=True)
class Admission:
    """A call let through: who, where, to what, and when it started."""

    who: Principal
    room: str
    provider: str
    model: str
    stream: bool
    started: float


class LlmService:
    def __init__(
        self, *, repo: UsageRepository, project_secrets: ProjectSecretService, auditor: Auditor, clock: Clock,
        config: LlmConfig,
    ) -> None:
        self._repo = repo
        self._secrets = project_secrets
        self._audit = auditor
        self._clock = clock
        self.config = config
        self._ledger = b.Ledger()
        self._buckets = TokenBuckets(config.requests, clock=clock, max_buckets=config.max_buckets)
        self._keys: dict[str, tuple[SecretStr, float]] = {}

    def provider(self, name: str) -> ProviderConfig:
        """Raises: NotFound for a provider that is unknown or not configured here."""
        found = self.config.providers.get(name)
        if found is None or not found.enabled:
            raise NotFound(f"the LLM provider {name!r} is not configured on this server")
        return found

    async def admit(self, who: Principal, provider: str, endpoint: Endpoint, model: str | None, *, stream: bool) -> Admission:
        """Let a call through, or raise why not: an expired token, the request rate (checked
        before the grant, so denied floods stay out of the audit log), the grant (a denial is
        audited), the budgets (audited).

        Raises:
            Unauthenticated, PermissionDenied, InvalidRequest, RateLimited, BudgetExceeded.
        """
        config = self.provider(provider)
        now = self._clock.now()
        decision = decide(who, provider, model if endpoint.has_model else None, configured_models=config.models,
                          now=now, leeway=self.config.leeway)
        shown = (model or endpoint.path)[:256]
        if decision.outcome is Outcome.UNAUTHENTICATED:
            raise Unauthenticated(decision.reason)
        if decision.outcome is Outcome.INVALID:
            raise InvalidRequest(decision.reason)
        # the rate first, so a flood of denied calls is not a flood of audit lines
        room = str(who.room or "")
        wait = self._buckets.spend((room, who.identity))
        if wait > 0:
            hint = math.ceil(wait * 10) / 10
            raise RateLimited(
                f"too many LLM requests by {who.identity!r}: at most {self.config.requests.burst} at once and "
                f"{self.config.requests.rate:g} a second (llm.requests_rate); retry after {hint:g} s",
                retry_after=hint,
            )
        if not decision.allowed:
            await self._audit.record(who, _Place(who.room, None, shown), "llm", provider, "denied", decision.reason)
            raise PermissionDenied(decision.reason)
        await self._check_budgets(who, room, provider, shown, now)
        return Admission(who, room, provider, model or "", stream, now)

    async def _check_budgets(self, who: Principal, room: str, provider: str, shown: str, now: float) -> None:
        day = b.utc_day(now)
        for kind, name in ((b.IDENTITY, str(who.identity)), (b.ROOM, room)):
            limit = self.config.budgets.limit(kind)
            if limit <= 0:
                continue
            if not self._ledger.known(day, kind, name):
                total = await self._repo.day_total(day, **{kind: name})
                self._ledger.seed(day, kind, name, total)
            used = self._ledger.total(day, kind, name)
            if used >= limit:
                reason = (f"the {kind} {name!r} has used {used} of its {limit} LLM tokens today "
                          f"(llm.{kind}_daily_tokens); the budget renews at 00:00 UTC")
                await self._audit.record(who, _Place(room, None, shown), "llm", provider, "over_budget", reason)
                raise BudgetExceeded(reason, retry_after=b.seconds_to_next_day(now))

    async def provider_key(self, provider: str) -> SecretStr:
        """The provider's API key, from its project keys secret (cached ``key_cache_ttl``).

        Raises:
            DependencyMissing: the secret or the key in it is missing (names, never values).
        """
        config = self.provider(provider)
        cached = self._keys.get(provider)
        if cached is not None and self._clock.monotonic() < cached[1]:
            return cached[0]
        try:
            bag = await self._secrets.resolve_keys(config.secret_id, service=KEY_READER)
        except NotFound:
            raise DependencyMissing(
                f"the {provider} key is not configured: create the project keys secret {config.secret_id!r} "
                f"with {config.key_name}=... (roomsvc secret keys create)"
            ) from None
        value = bag.get(config.key_name)
        if not value:
            raise DependencyMissing(f"the project keys secret {config.secret_id!r} has no {config.key_name}")
        key = SecretStr(value)
        if self.config.key_cache_ttl > 0:
            self._keys[provider] = (key, self._clock.monotonic() + self.config.key_cache_ttl)
        return key

    def settle(self, admission: Admission, usage: Usage, outcome: str) -> Awaitable[None]:
        """Count the call against today's budgets at once, and return the write of its usage
        row and audit line (one group-committed job) for the caller to await, or to run
        while it serves the next call (the answer is already out: nothing is left to fail)."""
        now = self._clock.now()
        row = UsageRow(
            time=now, day=b.utc_day(admission.started), room=admission.room, identity=str(admission.who.identity),
            provider=admission.provider, model=admission.model, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, outcome=outcome, stream=admission.stream,
        )
        detail = (f"input_tokens={usage.input_tokens} output_tokens={usage.output_tokens} stream={int(admission.stream)}"
                  + ("" if usage.reported or outcome != "ok" else " usage=unreported"))
        audit = self._audit.line(admission.who, _Place(admission.room, None, admission.model[:256] or "-"), "llm",
                                 admission.provider, outcome, detail)
        self._ledger.add(row.day, row.identity, row.room, usage.total)
        return self._repo.record_usage(row, audit)

    async def report(
        self, caller: Principal, *, room: str | None = None, identity: str | None = None, since: float | None = None
    ) -> list[UsageSummary]:
        """Usage per room, identity, provider and model (operator tokens only)."""
        if not caller.is_operator:
            raise PermissionDenied("LLM usage reports need an operator token (roomsvc token --operator)")
        return await self._repo.usage_report(room=room, identity=identity, since=since)
