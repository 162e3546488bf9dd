"""Small rules of the bridge's command line and attributes (no peers)."""

from __future__ import annotations

import pytest

from roomsvc.cli.mcp_cmds import _static_headers
from roomsvc.client.mcp_bridge import shown_url
from roomsvc.errors import InvalidRequest


def test_the_advertised_url_drops_a_key_in_the_query_and_user_info() -> None:
    canary = "mcp-key-canary-8080"
    shown = shown_url(f"https://user:{canary}@mcp.example.com:8443/mcp?api_key={canary}#frag")
    assert shown == "https://mcp.example.com:8443/mcp" and canary not in shown


def test_static_headers() -> None:
    assert _static_headers(["X-Api-Version: 2", "Accept:text/plain"]) == {"X-Api-Version": "2", "Accept": "text/plain"}
    for bad in ("nocolon", ": v", "Bad Name: v"):
        with pytest.raises(InvalidRequest):
            _static_headers([bad])
