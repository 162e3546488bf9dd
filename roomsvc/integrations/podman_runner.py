"""The ``podman`` runner: each service as an OCI container (Debian's podman, run as root).

Configuration is the runner's own: a ``containers.conf`` (cgroup manager, no default
ulimits) and, for insecure registries, a ``registries.conf`` in its state directory,
named to podman through ``CONTAINERS_CONF`` / ``CONTAINERS_REGISTRIES_CONF``; podman is
called with ``--runtime`` (runc: crun refuses hosts with hybrid cgroups).

Pulls: with a pull secret, ``podman pull --authfile F`` where F is a mode-0600 file
created for this pull only and removed as soon as the pull ends; without one, F holds no
credentials (never the host's own auth.json). The pull secret never reaches the container.

The environment: podman puts ``--env``, ``--env-file`` and env-type secrets into the
container's configuration, where ``podman inspect`` shows them. So none is used. A static
busybox from the host is mounted read-only at ``/.roomsvc/busybox`` and made the
entrypoint; it reads ``NAME base64(value)`` lines from the container's stdin (a pipe from
roomsvc, never a file), exports them and ``exec``s the service's command. ``ps`` shows the
loader's script, ``podman inspect`` the loader and the command; neither shows a value.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets as random
from pathlib import Path
from typing import Callable

from roomsvc.domain.project_secrets import PullCredentials
from roomsvc.domain.service_env import ResolvedEnvironment
from roomsvc.domain.service_spec import ServiceSpec
from roomsvc.errors import DependencyMissing, InvalidRequest, NotFound, OperationFailed, PullRefused, Timeout
from roomsvc.integrations.process_runner import pump

LOADER = "/.roomsvc/busybox"
#: reads "NAME BASE64" lines until an empty one, exports them, runs the command
LOADER_SCRIPT = (
    'while IFS= read -r line; do [ -z "$line" ] && break; '
    'n="${line%% *}"; v="$(printf %s "${line#* }" | ' + LOADER + ' base64 -d)"; export "$n=$v"; done; exec "$@"'
)
#: what podman itself needs to find conmon and the runtime (the server's PATH is not passed on)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_UNAUTHORIZED = re.compile(r"unauthori[sz]ed|authentication required|401|denied", re.I)
_MISSING = re.compile(r"manifest unknown|not found|name unknown|404", re.I)
_UNREACHABLE = re.compile(r"connection refused|no such host|i/o timeout|network is unreachable", re.I)


class PodmanSettings:
    def __init__(self, *, executable: str, runtime: str, cgroup_manager: str, env_loader: str,
                 insecure_registries: tuple[str, ...], state_dir: Path, pull_timeout: float, network: str = "",
                 command_timeout: float = 30.0) -> None:
        self.network = network
        self.command_timeout = command_timeout
        self.executable = executable
        self.runtime = runtime
        self.cgroup_manager = cgroup_manager
        self.env_loader = env_loader
        self.insecure_registries = insecure_registries
        self.state_dir = state_dir
        self.pull_timeout = pull_timeout


class Container:
    def __init__(self, runner: PodmanRunner, name: str, proc: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> None:
        self._runner = runner
        self._proc = proc
        self._reader = reader
        self.ident = name

    async def wait(self) -> int:
        code = await self._proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
        return code

    async def stop(self, timeout: float) -> None:
        if self._proc.returncode is not None:
            return
        await self._runner.podman("stop", "--time", str(max(1, int(timeout))), self.ident,
                                  timeout=timeout + self._runner.command_timeout)
        try:
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), self._runner.command_timeout)
        except asyncio.TimeoutError:
            self._proc.kill()
            await self._proc.wait()


class PodmanRunner:
    name = "podman"

    def __init__(self, settings: PodmanSettings) -> None:
        self._s = settings
        self.command_timeout = settings.command_timeout
        self._dir = settings.state_dir / "podman"
        self._env: dict[str, str] | None = None

    # -- configuration ---------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """podman's own environment: its configuration files, nothing of the server's."""
        if self._env is None:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            conf = self._dir / "containers.conf"
            conf.write_text(
                f'[engine]\ncgroup_manager = "{self._s.cgroup_manager}"\nruntime = "{self._s.runtime}"\n\n'
                "[containers]\ndefault_ulimits = []\n"
            )
            env = {"PATH": _PATH, "HOME": str(self._dir), "CONTAINERS_CONF": str(conf)}
            if self._s.insecure_registries:
                registries = self._dir / "registries.conf"
                registries.write_text("".join(
                    f'[[registry]]\nlocation = "{location}"\ninsecure = true\n\n' for location in self._s.insecure_registries
                ))
                env["CONTAINERS_REGISTRIES_CONF"] = str(registries)
            self._env = env
        return self._env

    async def podman(self, *args: str, timeout: float, stdin: bytes | None = None) -> tuple[int, str]:
        """Run one podman command; (exit status, its stderr and stdout as text)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self._s.executable, "--runtime", self._s.runtime, *args, env=self.environment(),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
        except FileNotFoundError:
            raise DependencyMissing(f"podman ({self._s.executable}) is not installed; set services.runner = \"process\" "
                                    "or install podman") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise Timeout(f"podman {args[0]} took longer than {timeout:g} s") from None
        return proc.returncode or 0, out.decode("utf-8", "replace")

    # -- pull ------------------------------------------------------------------------------

    async def pull(self, image: str, credentials: PullCredentials | None, *, secret_id: str | None) -> None:
        """Pull ``image`` with the credentials, through a 0600 auth file that lives only for the pull.

        Raises:
            PullRefused: bad or missing credentials, or no such image (never the password).
            DependencyMissing: the registry cannot be reached.
        """
        auth = self._dir / f"auth-{random.token_hex(8)}.json"
        self.environment()
        entries = {}
        if credentials is not None:
            pair = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
            entries[credentials.server] = {"auth": pair}
        fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"auths": entries}, fh)
            code, text = await self.podman("pull", "--quiet", "--authfile", str(auth), image, timeout=self._s.pull_timeout)
        finally:
            with contextlib.suppress(FileNotFoundError):
                auth.unlink()
        if code == 0:
            return
        text = _scrub(text, credentials)
        if _UNAUTHORIZED.search(text):
            if credentials is not None:
                raise PullRefused(f"the registry refused the credentials of pull secret {secret_id!r} for {image!r} "
                                  "(bad username or password)")
            raise PullRefused(f"the registry requires credentials for {image!r}: set container.pull_secret")
        if _UNREACHABLE.search(text):
            raise DependencyMissing(f"the registry of {image!r} cannot be reached")
        if _MISSING.search(text):
            raise PullRefused(f"the registry has no image {image!r}")
        raise PullRefused(f"pulling {image!r} failed: {_last_line(text)}")

    # -- run -------------------------------------------------------------------------------

    async def start(
        self, room: str, spec: ServiceSpec, resolved: ResolvedEnvironment, pull: PullCredentials | None,
        output: Callable[[str], None],
    ) -> Container:
        image = spec.container.image
        if image is None:
            raise InvalidRequest("container.image: the podman runner needs an image")
        if not Path(self._s.env_loader).is_file():
            raise DependencyMissing(f"services.podman_env_loader: {self._s.env_loader} is missing (install busybox-static)")
        await self.pull(image, pull, secret_id=spec.container.pull_secret)
        command = list(spec.container.command) or await self._image_command(image)
        name = container_name(room, spec.name)
        await self.podman("rm", "--force", "--time", "1", name, timeout=self._s.command_timeout)  # a leftover of a crash
        args = [
            "run", "--rm", "--interactive", "--pull", "never", "--name", name,
            "--label", f"roomsvc.room={room}", "--label", f"roomsvc.service={spec.name}",
            "--volume", f"{self._s.env_loader}:{LOADER}:ro",
            *(["--network", self._s.network] if self._s.network else []),
            "--entrypoint", json.dumps([LOADER, "sh", "-c", LOADER_SCRIPT, "roomsvc-env"]),
            image, *command,
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                self._s.executable, "--runtime", self._s.runtime, *args, env=self.environment(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
        except FileNotFoundError:
            raise DependencyMissing(f"podman ({self._s.executable}) is not installed") from None
        assert proc.stdin is not None and proc.stdout is not None
        reader = asyncio.create_task(pump(proc.stdout, output))
        try:
            proc.stdin.write(env_lines(resolved))
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # podman ended at once; its exit status and output tell why
        return Container(self, name, proc, reader)

    async def _image_command(self, image: str) -> list[str]:
        """The image's own entrypoint and command (when the spec gives none)."""
        code, text = await self.podman("image", "inspect", "--format", "json", image, timeout=self._s.command_timeout)
        if code != 0:
            raise NotFound(f"image {image!r} is not available after the pull")
        config = (json.loads(text)[0].get("Config") or {})
        command = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
        if not command:
            raise InvalidRequest("container.command: required (the image names no entrypoint or command)")
        return command


def env_lines(resolved: ResolvedEnvironment) -> bytes:
    """The loader's input: ``NAME base64(value)`` lines, then an empty line."""
    lines = [f"{name} {base64.b64encode(value.encode()).decode()}\n" for name, value in resolved.env.items()]
    return ("".join(lines) + "\n").encode()


def container_name(room: str, service: str) -> str:
    """``roomsvc-<room>_<service>``: room names have no ``_``, so no two pairs share a name."""
    return f"roomsvc-{room}_{service}"


def _scrub(text: str, credentials: PullCredentials | None) -> str:
    if credentials is not None:
        for value in (credentials.password, base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()):
            if value:
                text = text.replace(value, "[hidden]")
    return text


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:300]


__all__ = ["Container", "OperationFailed", "PodmanRunner", "PodmanSettings", "container_name", "env_lines"]
