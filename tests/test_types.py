"""The package type-checks: ``python -m mypy roomsvc`` with the [tool.mypy] settings in pyproject.toml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.support.peers import need

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_the_package() -> None:
    need(importlib.util.find_spec("mypy") is not None, "mypy is not installed: pip install -e '.[test]'")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "roomsvc"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        print(output)
    assert done.returncode == 0, f"mypy roomsvc failed (exit {done.returncode}):\n{output}"
