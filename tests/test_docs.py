"""docs/protocol.md publishes the same error and close-code tables the server uses."""

from __future__ import annotations

import re
from pathlib import Path

from roomsvc.transport.errors import CLOSE_CODES, ERROR_TABLE

DOC = (Path(__file__).resolve().parents[1] / "docs/protocol.md").read_text()


def _section(name: str) -> str:
    return DOC.split(f"<!-- {name}:start -->")[1].split(f"<!-- {name}:end -->")[0]


def test_every_error_class_is_published_with_its_code_and_status() -> None:
    table = _section("error-table")
    for cls, wire in ERROR_TABLE.items():
        if cls.name == "error":
            continue
        rows = [r for r in table.splitlines() if f"`{cls.name}`" in r]
        assert rows, f"{cls.name} missing from docs/protocol.md"
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert cells[0] == str(wire.code) and cells[2] == str(wire.status), (cls.name, cells, wire)


def test_close_codes_match() -> None:
    published = dict(re.findall(r"^\| (\d{4}) \| (.+) \|$", _section("close-table"), re.M))
    assert {int(k): v for k, v in published.items()} == CLOSE_CODES
