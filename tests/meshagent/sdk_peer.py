"""Run the real MeshAgent SDK (Python 3.13, .venv313) from the project's pytest (3.11).

The SDK cannot be imported here, so each scenario is a driver script in ``drivers/``,
fed a JSON config on stdin, printing JSON lines. Every SDK process costs 1-2 s of
imports, so a scenario checks many things in one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support.peers import need

REPO = Path(__file__).resolve().parents[2]
VENV313 = REPO / ".venv313"
PYTHON313 = VENV313 / "bin" / "python"
MESHAGENT_CLI = VENV313 / "bin" / "meshagent"
DRIVERS = Path(__file__).resolve().parent / "drivers"


def need_sdk() -> None:
    """Skip (or fail under ROOMSVC_TEST_REQUIRE_ALL=1) without the SDK's virtual environment."""
    need(
        PYTHON313.exists() and (VENV313 / ".installed").exists(),
        "the MeshAgent SDK needs Python 3.13: .venv313 is missing (run scripts/setup-peers; "
        "set PYTHON313=/path/to/python3.13 if none is found)",
    )


def sdk_env(**extra: str) -> dict[str, str]:
    """A clean environment: no MESHAGENT_* or ROOMSVC_* from the developer's shell (a
    MESHAGENT_API_KEY there would silently change which key the SDK signs with)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHAGENT_", "ROOMSVC_"))}
    env.update(extra)
    return env


def run_driver(name: str, config: dict[str, Any], *, timeout: float = 60) -> dict[str, Any]:
    """Run a driver to the end and return its ``result``."""
    proc = subprocess.run(
        [str(PYTHON313), str(DRIVERS / name)], input=json.dumps(config), capture_output=True, text=True,
        timeout=timeout, env=sdk_env(), cwd=DRIVERS,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = [line["result"] for line in lines if "result" in line]
    assert proc.returncode == 0 and results, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return results[-1]


class Driver:
    """A driver running alongside the test, for scenarios that interleave with a native client."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, name: str, config: dict[str, Any]) -> Driver:
        proc = await asyncio.create_subprocess_exec(
            str(PYTHON313), str(DRIVERS / name), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=sdk_env(), cwd=DRIVERS,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(config).encode())
        proc.stdin.close()
        return cls(proc)

    async def line(self, *, timeout: float = 20) -> dict[str, Any]:
        """The next JSON line (a step or the result)."""
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not raw:
                await self.proc.wait()
                stderr = (await self.proc.stderr.read()).decode() if self.proc.stderr else ""
                raise AssertionError(f"driver ended ({self.proc.returncode}) without more output:\n{stderr[-4000:]}")
            if raw.startswith(b"{"):
                return json.loads(raw)

    async def step(self, name: str) -> dict[str, Any]:
        line = await self.line()
        assert line.get("step") == name, line
        return line

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
