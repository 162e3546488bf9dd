"""Running room services: start, watch, restart on crash with backoff, stop cleanly.

The supervisor owns one unit per (room, service). Starting resolves the environment
afresh (:class:`~roomsvc.domain.service_env.EnvironmentResolver`), hands it to the
runner (podman or a host process, behind :class:`Runner`), and watches the result:

* the process exits: it is started again after a backoff that doubles from
  ``backoff_initial`` up to ``backoff_max`` (reset once a run lasted ``backoff_reset``);
* a minted token nears its expiry (``token_renew_margin`` before it): the service is
  restarted with a fresh environment, since a running process's environment cannot
  change;
* stop: the runner stops it (SIGTERM, then SIGKILL after ``stop_timeout``).

The first start is synchronous, so the operator learns at once why a service could
not start (a missing secret or grant, a refused pull); later failures are kept as the
unit's ``last_error`` and retried with backoff. Output lines go to a bounded ring
(``log_lines``) with every resolved secret value masked; the environment itself is
never logged.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from roomsvc.clock import Clock
from roomsvc.domain.observe import NOOP, Observer
from roomsvc.domain.principal import Principal
from roomsvc.domain.project_secrets import PullCredentials
from roomsvc.domain.service_catalog import ServiceCatalog
from roomsvc.domain.service_env import EnvironmentResolver, ResolvedEnvironment
from roomsvc.domain.service_spec import ServiceSpec
from roomsvc.errors import InternalError, InvalidState, RoomsvcError

log = logging.getLogger("roomsvc.services")
MAX_LINE = 4096
MASK = "[hidden]"


class ServiceState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    #: waiting to start again after a crash or a failed start
    BACKOFF = "backoff"
    STOPPING = "stopping"


class RunningService(Protocol):
    """A started service, as the runner hands it back."""

    #: the process id or the container id
    ident: str

    async def wait(self) -> int:
        """Wait for the service to end; its exit status."""

    async def stop(self, timeout: float) -> None:
        """Ask it to end (SIGTERM), kill it after ``timeout`` seconds; idempotent."""


class Runner(Protocol):
    name: str

    async def start(
        self, room: str, spec: ServiceSpec, resolved: ResolvedEnvironment, pull: PullCredentials | None,
        output: Callable[[str], None],
    ) -> RunningService:
        """Pull what is needed and start the service with exactly ``resolved.env``.

        Raises:
            RoomsvcError: a typed reason it could not start (pull refused, no engine...).
        """


@dataclass(frozen=True)
class SupervisorSettings:
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_reset: float = 60.0
    stop_timeout: float = 10.0
    token_renew_margin: float = 300.0
    log_lines: int = 1000


@dataclass
class _Unit:
    room: str
    name: str
    logs: deque[str]
    state: ServiceState = ServiceState.STOPPED
    ident: str | None = None
    restarts: int = 0
    renewals: int = 0
    started_at: float | None = None
    exit_code: int | None = None
    last_error: RoomsvcError | None = None
    task: asyncio.Task[None] | None = None
    running: RunningService | None = None
    stopping: bool = False
    sensitive: tuple[str, ...] = field(default=(), repr=False)
    #: the earliest expiry of a token in the current environment
    expires_at: float | None = None
    #: start and stop of one unit take turns
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def output(self, line: str) -> None:
        line = line[:MAX_LINE]
        for value in self.sensitive:
            line = line.replace(value, MASK)
        self.logs.append(line)

    def status(self, runner: str) -> dict[str, Any]:
        error = None if self.last_error is None else {"name": self.last_error.name, "message": self.last_error.message}
        return {"room": self.room, "name": self.name, "runner": runner, "state": self.state.value, "id": self.ident,
                "restarts": self.restarts, "renewals": self.renewals, "started_at": self.started_at,
                "exit_code": self.exit_code, "last_error": error}


class ServiceSupervisor:
    def __init__(
        self, *, catalog: ServiceCatalog, resolver: EnvironmentResolver, runner: Runner, clock: Clock,
        settings: SupervisorSettings, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observer: Observer = NOOP,
    ) -> None:
        self._observer = observer
        self._sleep = sleep  # tests record the backoff delays instead of waiting them out
        self._catalog = catalog
        self._resolver = resolver
        self._runner = runner
        self._clock = clock
        self._s = settings
        self._units: dict[tuple[str, str], _Unit] = {}

    # -- operator operations --------------------------------------------------------------

    async def start(self, caller: Principal, room: str, name: str) -> dict[str, Any]:
        """Start a stored service (no-op when it already runs).

        Raises:
            PermissionDenied (not an operator), NotFound (no such service), and whatever
            stopped the first start: NotFound/PermissionDenied naming a secret or grant,
            DependencyMissing or OperationFailed from the runner (pull refused).
        """
        record = await self._catalog.get(caller, room, name)
        try:
            status = await self._start(record.room, record.name)
        except RoomsvcError as exc:
            await self._catalog.audit(caller, record.room, record.name, "service_start", exc.name)
            raise
        await self._catalog.audit(caller, record.room, record.name, "service_start", "ok")
        return status

    async def stop(self, caller: Principal, room: str, name: str) -> dict[str, Any]:
        record = await self._catalog.get(caller, room, name)
        unit = self._units.get((record.room, record.name))
        if unit is None:
            return _Unit(record.room, record.name, deque()).status(self._runner.name)
        async with unit.lock:
            await self._stop(unit)
        await self._catalog.audit(caller, record.room, record.name, "service_stop", "ok")
        return unit.status(self._runner.name)

    async def status(self, caller: Principal, room: str, name: str) -> dict[str, Any]:
        record = await self._catalog.get(caller, room, name)
        unit = self._units.get((record.room, record.name)) or _Unit(record.room, record.name, deque())
        return unit.status(self._runner.name)

    async def logs(self, caller: Principal, room: str, name: str, *, tail: int) -> list[str]:
        record = await self._catalog.get(caller, room, name)
        unit = self._units.get((record.room, record.name))
        lines = [] if unit is None else list(unit.logs)
        return lines[-tail:] if tail > 0 else lines

    async def delete(self, caller: Principal, room: str, name: str) -> None:
        """Delete a service's spec, stopping it first when it runs."""
        room_ = await self._catalog.authorize(caller, room, name, "service_delete")
        unit = self._units.pop((room_, name), None)
        if unit is not None:
            async with unit.lock:
                await self._stop(unit)
        await self._catalog.delete(caller, room_, name)

    async def autostart(self) -> None:
        """Start every stored service (``services.autostart``); a failure is logged and kept."""
        for record in await self._catalog.all():
            try:
                await self._start(record.room, record.name)
            except RoomsvcError as exc:
                log.warning("service %s in room %s did not start: %s", record.name, record.room, exc.message)

    async def close(self) -> None:
        """Stop every service (server shutdown)."""
        await asyncio.gather(*(self._stop(u) for u in list(self._units.values())), return_exceptions=True)

    # -- the unit's life ------------------------------------------------------------------

    async def _start(self, room: str, name: str) -> dict[str, Any]:
        unit = self._units.get((room, name))
        if unit is None:
            unit = self._units[(room, name)] = _Unit(room, name, deque(maxlen=max(1, self._s.log_lines)))
        async with unit.lock:  # two starts at once launch it once
            if unit.task is not None and not unit.task.done():
                return unit.status(self._runner.name)
            unit.stopping = False
            unit.restarts = 0
            await self._launch(unit)  # the first start reports its failure to the caller
            unit.task = asyncio.create_task(self._watch(unit), name=f"service {room}/{name}")
            return unit.status(self._runner.name)

    async def _launch(self, unit: _Unit) -> None:
        unit.state = ServiceState.STARTING
        try:
            spec = (await self._catalog.find(unit.room, unit.name)).parsed()
            resolved = await self._resolver.resolve(unit.room, spec)
            pull = await self._resolver.pull_credentials(spec)
            unit.sensitive = resolved.sensitive + ((pull.password,) if pull and len(pull.password) >= 4 else ())
            unit.running = await self._runner.start(unit.room, spec, resolved, pull, unit.output)
        except RoomsvcError as exc:
            unit.last_error, unit.state, unit.running = exc, ServiceState.STOPPED, None
            unit.output(f"[roomsvc] could not start: {exc.name}: {exc.message}")
            raise
        except Exception as exc:  # noqa: BLE001 - a runner bug must not leak its text (it may hold a value)
            log.exception("service %s/%s: runner failed", unit.room, unit.name)
            unit.last_error, unit.state, unit.running = InternalError("the runner failed; see the server log"), ServiceState.STOPPED, None
            raise unit.last_error from exc
        unit.ident, unit.state, unit.exit_code, unit.last_error = unit.running.ident, ServiceState.RUNNING, None, None
        unit.started_at = self._clock.now()
        unit.expires_at = resolved.expires_at

    async def _watch(self, unit: _Unit) -> None:
        delay = self._s.backoff_initial
        while not unit.stopping:
            running = unit.running
            if running is not None:
                began = self._clock.monotonic()
                renewed = await self._run_until_exit_or_renewal(unit, running)
                if unit.stopping:
                    break
                if renewed:
                    unit.renewals += 1
                    self._observer.service_restart("renewal")
                    delay_now = 0.0
                else:
                    unit.restarts += 1
                    self._observer.service_restart("crash")
                    if self._clock.monotonic() - began >= self._s.backoff_reset:
                        delay = self._s.backoff_initial
                    delay_now, delay = delay, min(delay * 2, self._s.backoff_max)
                    unit.output(f"[roomsvc] exited with status {unit.exit_code}; starting again in {delay_now:g} s")
            else:
                delay_now, delay = delay, min(delay * 2, self._s.backoff_max)
            unit.state = ServiceState.BACKOFF
            unit.running = None
            if delay_now:
                await self._sleep(delay_now)
            if unit.stopping:
                break
            try:
                await self._launch(unit)
            except RoomsvcError:
                unit.state = ServiceState.BACKOFF
        unit.state = ServiceState.STOPPED

    async def _run_until_exit_or_renewal(self, unit: _Unit, running: RunningService) -> bool:
        """Wait for the exit; True when it was restarted to renew a token."""
        expiry = unit.expires_at
        waiter = asyncio.ensure_future(running.wait())
        timeout = None if expiry is None else max(0.0, expiry - self._s.token_renew_margin - self._clock.now())
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
        if waiter in done:
            unit.exit_code = waiter.result()
            return False
        unit.output("[roomsvc] renewing the service's tokens: restarting it with a fresh environment")
        await running.stop(self._s.stop_timeout)
        unit.exit_code = await waiter
        return True

    async def _stop(self, unit: _Unit) -> None:
        unit.stopping = True
        task, unit.task = unit.task, None
        if unit.running is not None:
            unit.state = ServiceState.STOPPING
            await unit.running.stop(self._s.stop_timeout)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if unit.running is not None:  # launched while we were stopping the previous one
            await unit.running.stop(self._s.stop_timeout)
        unit.state, unit.running = ServiceState.STOPPED, None


__all__ = ["InvalidState", "Runner", "RunningService", "ServiceState", "ServiceSupervisor", "SupervisorSettings"]
