"""The room console's browser tests: one real roomsvc + the real OpenID provider per module
(the OAuth tests' ``oauth_env``), and one headless Debian chromium driven by Playwright.

No browser is downloaded: Playwright launches /usr/bin/chromium (``CHROMIUM`` overrides).
A missing chromium or playwright package skips (fails under ROOMSVC_TEST_REQUIRE_ALL=1).
Screenshots go to the module's tmp dir; set ``ROOMSVC_UI_SCREENSHOTS=docs/screenshots`` to
also copy them there (that is how the committed ones were made).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.oauth.conftest import oauth_env  # noqa: F401  (the module's server and provider)
from tests.support.peers import need

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    need(Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need(False, "the playwright package is missing (pip install -e .[test])")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Shots:
    """Numbered screenshots of each step, kept in the module's tmp dir (and copied on request)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.taken: list[Path] = []

    async def take(self, page: Any, name: str) -> Path:
        path = self.dir / f"{len(self.taken) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Any:
    found = Shots(tmp_path_factory.mktemp("screenshots"))
    yield found
    target = os.environ.get("ROOMSVC_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in found.taken:
            shutil.copy(path, Path(target) / path.name)
