"""The supervisor's rules with a fake runner and a fake clock: backoff, reset, token
renewal, the first start's error, masking, stop. No process is started here (the real
runners are tested end to end in tests/services)."""

from __future__ import annotations

import asyncio
import json
from types import MappingProxyType
from typing import Any, Callable

import pytest

from roomsvc.clock import FakeClock
from roomsvc.domain.audit import Auditor
from roomsvc.domain.observe import NoObserver
from roomsvc.domain.principal import Principal
from roomsvc.domain.service_catalog import ServiceCatalog, ServiceRecord
from roomsvc.domain.service_env import ResolvedEnvironment, SecretEnv
from roomsvc.domain.service_supervisor import ServiceSupervisor, SupervisorSettings
from roomsvc.errors import NotFound, PermissionDenied
from roomsvc.ids import Identity

SECRET = "supervised-CANARY-3f"
OPERATOR = Principal(identity=Identity("ops"), room=None, api=MappingProxyType({"admin": {}}))
SPEC = {"kind": "Service", "metadata": {"name": "svc"}, "container": {"command": ["run"]}}


class Repo:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], ServiceRecord] = {}
        self.audit: list[Any] = []

    async def put_service(self, record: ServiceRecord, *, replace: bool, audit: Any) -> ServiceRecord:
        self.rows[(record.room, record.name)] = record
        return record

    async def get_service(self, room: str, name: str) -> ServiceRecord | None:
        return self.rows.get((room, name))

    async def list_services(self, room: str | None) -> list[ServiceRecord]:
        return list(self.rows.values())

    async def delete_service(self, room: str, name: str, *, audit: Any) -> bool:
        return self.rows.pop((room, name), None) is not None

    async def append(self, records: Any) -> None:
        self.audit.extend(records)


class Resolver:
    def __init__(self, clock: FakeClock, *, ttl: float | None = None, error: Exception | None = None) -> None:
        self.clock, self.ttl, self.error = clock, ttl, error

    async def resolve(self, room: str, spec: Any) -> ResolvedEnvironment:
        if self.error:
            raise self.error
        expires = None if self.ttl is None else self.clock.now() + self.ttl
        return ResolvedEnvironment(env=SecretEnv({"A": SECRET}), expires_at=expires, sensitive=(SECRET,))

    async def pull_credentials(self, spec: Any) -> None:
        return None


class Run:
    def __init__(self, code: int | None, on_wait: Callable[[], None]) -> None:
        self.ident, self.code, self.on_wait = "fake", code, on_wait
        self.stopped = asyncio.Event()

    async def wait(self) -> int:
        self.on_wait()
        if self.code is not None:
            return self.code
        await self.stopped.wait()
        return 143

    async def stop(self, timeout: float) -> None:
        self.stopped.set()


class Runner:
    name = "fake"

    def __init__(self, code: int | None, on_wait: Callable[[], None] = lambda: None) -> None:
        self.code, self.on_wait, self.envs, self.runs = code, on_wait, [], []

    async def start(self, room: str, spec: Any, resolved: ResolvedEnvironment, pull: Any, output: Callable[[str], None]) -> Run:
        self.envs.append(dict(resolved.env))
        output(f"hello {SECRET}")
        run = Run(self.code, self.on_wait)
        self.runs.append(run)
        return run


async def supervisor(runner: Runner, resolver: Resolver, clock: FakeClock, sleeps: list[float],
                     observer: object = None, **settings: float) -> ServiceSupervisor:
    repo = Repo()
    catalog = ServiceCatalog(store=repo, auditor=Auditor(repo, clock), clock=clock, load=json.loads)  # type: ignore[arg-type]
    await catalog.create(OPERATOR, "room1", SPEC)

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    values = {"backoff_initial": 1.0, "backoff_max": 4.0, "backoff_reset": 60.0, "token_renew_margin": 5.0, **settings}
    return ServiceSupervisor(catalog=catalog, resolver=resolver, runner=runner, clock=clock,  # type: ignore[arg-type]
                             settings=SupervisorSettings(**values), sleep=sleep,  # type: ignore[arg-type]
                             **({"observer": observer} if observer is not None else {}))


class Restarts(NoObserver):
    """Records what the supervisor tells the Observer port (the metrics behind it are tested in tests/ops)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def service_restart(self, reason: str) -> None:
        self.reasons.append(reason)


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(10000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_crashing_service_backs_off_doubling_to_the_cap_and_resets_after_a_long_run() -> None:
    clock, sleeps = FakeClock(), []
    runner = Runner(code=3)
    restarts = Restarts()
    sup = await supervisor(runner, Resolver(clock), clock, sleeps, observer=restarts)
    await sup.start(OPERATOR, "room1", "svc")
    await wait_for(lambda: len(sleeps) >= 5)
    await sup.stop(OPERATOR, "room1", "svc")
    assert sleeps[:5] == [1.0, 2.0, 4.0, 4.0, 4.0]
    status = await sup.status(OPERATOR, "room1", "svc")
    assert status["state"] == "stopped" and status["restarts"] >= 5 and status["exit_code"] == 3
    assert all(env == {"A": SECRET} for env in runner.envs)  # resolved afresh each time
    assert set(restarts.reasons) == {"crash"} and len(restarts.reasons) == status["restarts"]  # what /metrics counts

    # a run that lasted backoff_reset starts the backoff over
    clock2, sleeps2 = FakeClock(), []
    runner2 = Runner(code=3, on_wait=lambda: clock2.advance(60) if len(runner2.runs) == 3 else None)
    sup2 = await supervisor(runner2, Resolver(clock2), clock2, sleeps2)
    await sup2.start(OPERATOR, "room1", "svc")
    await wait_for(lambda: len(sleeps2) >= 4)
    await sup2.close()
    assert sleeps2[:4] == [1.0, 2.0, 1.0, 2.0]


async def test_tokens_are_renewed_by_a_restart_before_they_expire() -> None:
    clock, sleeps = FakeClock(), []
    runner = Runner(code=None)
    restarts = Restarts()
    sup = await supervisor(runner, Resolver(clock, ttl=5.0), clock, sleeps, observer=restarts, token_renew_margin=5.0)
    await sup.start(OPERATOR, "room1", "svc")
    await wait_for(lambda: len(runner.runs) >= 3)
    await sup.close()
    status = await sup.status(OPERATOR, "room1", "svc")
    assert status["renewals"] >= 2 and status["restarts"] == 0 and sleeps == []  # no backoff for a renewal
    assert set(restarts.reasons) == {"renewal"} and len(restarts.reasons) == status["renewals"]
    assert all(run.stopped.is_set() for run in runner.runs)


async def test_the_first_start_reports_its_error_and_logs_are_masked() -> None:
    clock, sleeps = FakeClock(), []
    sup = await supervisor(Runner(code=None), Resolver(clock, error=NotFound("container.environment[0] (A): missing")),
                           clock, sleeps)
    with pytest.raises(NotFound, match=r"container.environment\[0\]"):
        await sup.start(OPERATOR, "room1", "svc")
    status = await sup.status(OPERATOR, "room1", "svc")
    assert status["state"] == "stopped" and status["last_error"]["name"] == "not_found"

    ok = await supervisor(Runner(code=None), Resolver(clock), clock, sleeps)
    await ok.start(OPERATOR, "room1", "svc")
    assert await ok.logs(OPERATOR, "room1", "svc", tail=0) == ["hello [hidden]"]
    await ok.close()


async def test_room_tokens_are_refused() -> None:
    clock = FakeClock()
    sup = await supervisor(Runner(code=None), Resolver(clock), clock, [])
    room_admin = Principal(identity=Identity("eve"), room="room1", api=MappingProxyType({"admin": {}, "secrets": {}}))  # type: ignore[arg-type]
    for call in (sup.start, sup.stop, sup.status):
        with pytest.raises(PermissionDenied):
            await call(room_admin, "room1", "svc")
