"""The ``process`` runner: a service's command on the host, for hosts without a container engine.

The command runs with exactly the resolved environment (nothing of the server's own:
no ``PATH`` unless the spec sets one, so ``container.command[0]`` should be a path), in
its own session (so a stop reaches its children), with stdout and stderr read line by
line into the supervisor's ring. The environment is passed to ``execve`` directly: it is
never on a command line (``ps``), in a file, or in a log. ``container.image`` and
``pull_secret`` are ignored by this runner (there is nothing to pull).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Callable

from roomsvc.domain.project_secrets import PullCredentials
from roomsvc.domain.service_env import ResolvedEnvironment
from roomsvc.domain.service_spec import ServiceSpec
from roomsvc.errors import DependencyMissing, InvalidRequest, OperationFailed


class HostProcess:
    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> None:
        self._proc = proc
        self._reader = reader
        self.ident = str(proc.pid)

    async def wait(self) -> int:
        code = await self._proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
        return code

    async def stop(self, timeout: float) -> None:
        if self._proc.returncode is not None:
            return
        _signal_group(self._proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), timeout)
        except asyncio.TimeoutError:
            _signal_group(self._proc.pid, signal.SIGKILL)
            await self._proc.wait()


class ProcessRunner:
    name = "process"

    def __init__(self, *, work_dir: Path) -> None:
        self._work_dir = work_dir

    async def start(
        self, room: str, spec: ServiceSpec, resolved: ResolvedEnvironment, pull: PullCredentials | None,
        output: Callable[[str], None],
    ) -> HostProcess:
        argv = spec.container.command
        if not argv:
            raise InvalidRequest("container.command: the process runner needs a command (it does not run images)")
        cwd = self._work_dir / room / spec.name
        cwd.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=dict(resolved.env), cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
        except FileNotFoundError:
            raise DependencyMissing(f"container.command[0]: {argv[0][:200]!r} not found (give a path; PATH is the spec's own)") from None
        except PermissionError:
            raise OperationFailed(f"container.command[0]: {argv[0][:200]!r} is not executable") from None
        assert proc.stdout is not None
        return HostProcess(proc, asyncio.create_task(pump(proc.stdout, output)))


async def pump(stream: asyncio.StreamReader, output: Callable[[str], None]) -> None:
    """Each line of a child's output, decoded leniently, to ``output``; overlong lines are cut."""
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line above the reader's limit: take what is there
            line = await stream.read(65536)
        if not line:
            return
        output(line.decode("utf-8", "replace").rstrip("\n"))


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
