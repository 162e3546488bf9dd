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


def test_the_openapi_document_describes_every_http_route() -> None:
    from roomsvc.transport.http.openapi import openapi_document

    routes = (Path(__file__).resolve().parents[1] / "roomsvc/transport/http/routes.py").read_text()
    declared = set(re.findall(r'add_(get|put|post|delete)\(\s*"([^"]+)"', routes))
    declared |= {(m, base + suffix) for m, suffix in re.findall(r'add_(get|put|post|delete)\(room_secret(?: \+ "([^"]*)")?', routes)
                 for base in ["/v1/rooms/{room}/secrets/{secret_id}"]}
    # the project-secret routes take {kind}; the document spells out both kinds
    declared = {(m, p.replace("{kind}", kind)) for m, p in declared for kind in ("keys", "pull")}
    paths = openapi_document("http://127.0.0.1")["paths"]
    undocumented = sorted(f"{m.upper()} {p}" for m, p in declared
                          if p not in ("/metrics", "/v1/openapi.json") and m not in paths.get(p, {}))
    assert not undocumented, undocumented


def test_the_openapi_headers_body_lists_every_field_the_endpoint_reads() -> None:
    from roomsvc.transport.http.openapi import openapi_document

    handler = (Path(__file__).resolve().parents[1] / "roomsvc/transport/http/headers_api.py").read_text()
    read = set(re.findall(r'(?:opt_str\(body, |body\.get\()"([a-z_]+)"', handler))
    op = openapi_document("http://127.0.0.1")["paths"]["/v1/rooms/{room}/headers"]["post"]
    documented = set(op["requestBody"]["content"]["application/json"]["schema"]["properties"])
    assert "destination" in read and read == documented, (read, documented)
