"""The dependency rules of STYLE.md, checked on the import graph (AST, no imports run)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "roomsvc"
STDLIB = set(sys.stdlib_module_names)

#: third-party library -> where it may be imported
CONFINED = {
    "aiohttp": ("transport/", "client/", "app.py", "integrations/"),
    "aiosqlite": ("storage/sqlite/",),
    "asyncpg": ("storage/postgres/",),
    "redis": ("integrations/redis_bus.py",),
    "cryptography": ("crypto/",),
    "jwt": ("crypto/tokens.py",),
    "authlib": ("integrations/",),
    "prometheus_client": ("transport/metrics.py",),
    # services (issue 13)
    "yaml": ("integrations/spec_yaml.py",),
    "jinja2": ("integrations/templates.py",),
    "opentelemetry": ("transport/tracing.py",),
    # MCP servers as room toolkits (issue 17): the official SDK and the HTTP client it brings
    "mcp": ("integrations/mcp_client.py",),
    "httpx2": ("integrations/mcp_client.py",),
}


def modules() -> list[tuple[str, set[str], ast.Module]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        tree = ast.parse(path.read_text(), rel)
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out.append((rel, names, tree))
    return out


def test_domain_imports_only_the_standard_library_and_core_modules() -> None:
    allowed = ("roomsvc.errors", "roomsvc.ids", "roomsvc.clock", "roomsvc.domain")
    for rel, names, _ in modules():
        if not rel.startswith("domain/"):
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in STDLIB or name.startswith(allowed), f"{rel} imports {name}"


def test_layers_point_inwards() -> None:
    forbidden = {
        "storage/": ("roomsvc.transport", "roomsvc.app", "roomsvc.cli"),
        "crypto/": ("roomsvc.transport", "roomsvc.app", "roomsvc.cli"),
        "integrations/": ("roomsvc.transport", "roomsvc.app", "roomsvc.cli"),
        "transport/": ("roomsvc.storage", "roomsvc.crypto", "roomsvc.integrations", "roomsvc.app", "roomsvc.cli",
                       "roomsvc.client"),
        "client/": ("roomsvc.domain", "roomsvc.storage", "roomsvc.crypto", "roomsvc.integrations", "roomsvc.app",
                    "roomsvc.cli"),
    }
    for rel, names, _ in modules():
        for prefix, banned in forbidden.items():
            if rel.startswith(prefix):
                bad = [n for n in names if any(n == b or n.startswith(b + ".") for b in banned)]
                assert not bad, f"{rel} imports {bad}"


def test_clients_stand_apart_from_the_server_transports() -> None:
    """The client package (HTTP client, room connection, toolkit proxy) speaks to a server the way
    any other client would: through the wire contract, never through the server's own code. Of the
    transport package it may use only the wire error table (``transport/errors.py``), which both
    ends share; the server transports never import a client."""
    seen = 0
    for rel, names, _ in modules():
        if not rel.startswith("client/"):
            continue
        seen += 1
        bad = [n for n in names if n.startswith("roomsvc.transport") and n != "roomsvc.transport.errors"]
        assert not bad, f"{rel} imports server transport code {bad}"
    assert seen >= 3  # http.py, room.py, proxy.py


def test_each_third_party_library_lives_in_one_place() -> None:
    for rel, names, _ in modules():
        for name in names:
            top = name.split(".")[0]
            if top in CONFINED:
                assert rel.startswith(CONFINED[top]), f"{rel} imports {top}; allowed only in {CONFINED[top]}"


def test_only_config_reads_the_environment() -> None:
    for rel, _, tree in modules():
        if rel == "config.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"} and getattr(node.value, "id", "") == "os":
                pytest.fail(f"{rel}:{node.lineno} reads os.{node.attr}; read settings in roomsvc/config.py")
