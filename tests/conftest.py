from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.inprocess import InProcessServer
from tests.support.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One real server per test module (SQLite in a fresh data directory)."""
    srv = Server(tmp_path_factory.mktemp("srv") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path):
    """Start extra servers with their own settings; all are stopped at the end of the test."""
    started: list[Server] = []

    def start(env: dict[str, str] | None = None, data_dir: Path | None = None) -> Server:
        srv = Server(data_dir or tmp_path / f"data{len(started)}", env=env).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
async def make_fake_time_server(tmp_path: Path):
    """Start in-process servers on a FakeClock (tests/support/inprocess.py) with their own
    settings, for expiry, TTL and retention tests that move time instead of waiting; all
    are stopped at the end of the test."""
    started: list[InProcessServer] = []

    async def start(env: dict[str, str] | None = None) -> InProcessServer:
        srv = await InProcessServer(tmp_path / f"fake-time{len(started)}", env=env).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        await srv.stop()
