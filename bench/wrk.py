"""HTTP load with Debian's ``wrk`` (a separate process): requests/s, p50/p99 latency and
the request count, parsed from its ``--latency`` report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def available() -> bool:
    return shutil.which("wrk") is not None


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS[m.group(2)]


def _check_once(url: str, method: str, body: object, headers: dict[str, str]) -> None:
    """One request first: a refusal is reported with its answer, not as a count."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={**headers, **({"Content-Type": "application/json"} if data else {})})
    try:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30).read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {url} -> {exc.code}: {exc.read()[:300]!r}") from None


def run(url: str, *, method: str = "GET", body: object = None, headers: dict[str, str] | None = None,
        connections: int = 32, duration: float = 3.0, threads: int = 1, numbered: bool = False) -> dict[str, float]:
    """``numbered``: each request to ``url`` + ``-<n>`` (n counting up), e.g. a fresh id per write."""
    _check_once(url + ("-0" if numbered else ""), method, body, headers or {})
    lua = [f'wrk.method = "{method}"']
    if body is not None:
        lua.append(f"wrk.body = {json.dumps(json.dumps(body))}")
        lua.append('wrk.headers["Content-Type"] = "application/json"')
    for k, v in (headers or {}).items():
        lua.append(f'wrk.headers["{k}"] = {json.dumps(v)}')
    if numbered:
        path = "/" + url.split("/", 3)[3]
        lua.append(f"counter = 0\nrequest = function()\n  counter = counter + 1\n"
                   f"  return wrk.format(nil, {json.dumps(path)} .. '-' .. counter)\nend")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lua) + "\n")
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", script, url],
            capture_output=True, text=True, timeout=duration + 30, check=True,
        ).stdout
    finally:
        Path(script).unlink()
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{method} {url}: {bad.group(1)} non-2xx answers of {requests}")
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(lat["50"]), "p99_ms": _ms(lat["99"]),
    }
