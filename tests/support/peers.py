"""Skips for missing test peers that turn into failures under CI (ROOMSVC_TEST_REQUIRE_ALL=1)."""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("ROOMSVC_TEST_REQUIRE_ALL", "") not in ("", "0")


def need(available: bool, reason: str) -> None:
    """Skip (printing ``reason``) when a peer is missing, or fail when CI requires every peer."""
    if available:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required test peer missing (ROOMSVC_TEST_REQUIRE_ALL=1): {reason}", pytrace=False)
    pytest.skip(reason)
