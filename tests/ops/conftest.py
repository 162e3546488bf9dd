"""Debian's Prometheus scraping a real roomsvc, and the OAuth peers of tests/oauth.

``prometheus`` gets a scrape config this fixture writes (loopback only, every second), a
TSDB in the test's temporary directory and a free 127.0.0.1 port; a missing binary skips
(or fails under ROOMSVC_TEST_REQUIRE_ALL=1).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from tests.oauth.conftest import browser, free_port, oauth_env  # noqa: F401 - fixtures used by this package
from tests.support.peers import need
from tests.support.processes import stop_process

#: how often Prometheus scrapes (its smallest sensible interval)
SCRAPE_INTERVAL = "1s"


class Prometheus:
    def __init__(self, target: str, base: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = base / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_INTERVAL}\n"
            f"  scrape_timeout: {SCRAPE_INTERVAL}\n"
            "scrape_configs:\n"
            "  - job_name: roomsvc\n"
            "    metrics_path: /metrics\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self._log = open(base / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={base / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_ready(base / "prometheus.log")

    def _wait_ready(self, log: Path, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self.proc.returncode}): {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus was not ready within {within} s: {log.read_text()[-2000:]}")

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/api/v1/query", params={"query": promql}) as r:
            body = await r.json()
        assert body["status"] == "success", (promql, body)
        return list(body["data"]["result"])

    async def value(self, promql: str) -> float | None:
        """The single value of a query, or None when it has no series (yet)."""
        result = await self.query(promql)
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@pytest.fixture(scope="module")
def prometheus(oauth_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:  # noqa: F811
    need(shutil.which("prometheus") is not None, "Debian's prometheus is not installed (scripts/setup-system)")
    target = oauth_env.server.url.removeprefix("http://")
    prom = Prometheus(target, tmp_path_factory.mktemp("prometheus"))
    yield prom
    prom.stop()
