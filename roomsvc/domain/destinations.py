"""Where a credential may be sent: a destination URL against a connector's ``allowed_hosts``.

Pure rules, no I/O. A destination is parsed once, strictly, with the standard library:

* an absolute ``http`` or ``https`` URL with a host; no user info (``https://ok.com@evil.com/``
  is refused, not read as host ``evil.com``), no fragment, no backslash, no whitespace or
  control character, no percent-escape in the host, at most :data:`MAX_URL` characters;
* the host is compared in ASCII lower case: names are IDNA-encoded (``bücher.example`` is
  ``xn--bcher-kva.example``), IP literals canonical (``[::1]``); a trailing dot is kept, so
  ``api.github.com.`` is not ``api.github.com``;
* the port is the URL's, else the scheme's default (443, 80).

An ``allowed_hosts`` entry is a host name or IP literal, which allows every port of that host,
or ``host:port`` (``[v6]:port``), which allows that port only. Matching is exact: no suffix,
no wildcard (no connector uses one; ``*.example.com`` matches nothing). An entry that does not
parse matches nothing.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

from roomsvc.errors import InvalidRequest

MAX_URL = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


@dataclass(frozen=True)
class Destination:
    scheme: str
    #: ASCII, lower case; IPv6 without brackets
    host: str
    port: int


@dataclass(frozen=True)
class HostRule:
    host: str
    #: None: every port of the host
    port: int | None


def parse_destination(url: object) -> Destination:
    """Parse a destination URL.

    Raises:
        InvalidRequest: saying what is wrong with it (the URL is not a secret; it is named).
    """
    if not isinstance(url, str) or not url:
        raise InvalidRequest("'destination' must be the URL the header will be sent to")
    if len(url) > MAX_URL:
        raise InvalidRequest(f"'destination' is longer than {MAX_URL} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise InvalidRequest("'destination' may not contain whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRequest("'destination' is not a valid URL (bad port or IPv6 literal)") from None
    if parts.scheme not in DEFAULT_PORTS or not url[len(parts.scheme) :].startswith("://"):
        raise InvalidRequest("'destination' must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise InvalidRequest("'destination' may not carry user info (user@host)")
    if "#" in url:
        raise InvalidRequest("'destination' may not carry a fragment")
    if port == 0:
        raise InvalidRequest("'destination' has port 0")
    host = normalise_host(parts.hostname or "")
    if host is None:
        raise InvalidRequest("'destination' has no valid host name")
    return Destination(parts.scheme, host, port if port is not None else DEFAULT_PORTS[parts.scheme])


def normalise_host(host: str) -> str | None:
    """The host in the form matching compares (see the module docstring), or None if invalid."""
    if not host or "%" in host:
        return None
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare)).lower()
    except ValueError:
        pass
    if bare != host:
        return None  # brackets around something that is not an IP address
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    return ascii_host if _NAME.fullmatch(ascii_host) else None


def parse_host_rule(entry: object) -> HostRule | None:
    """One ``allowed_hosts`` entry: ``host``, ``host:port`` or ``[v6]:port``; None if invalid."""
    if not isinstance(entry, str) or not entry:
        return None
    host, port = entry, None
    if entry.startswith("["):
        close = entry.find("]")
        host, rest = entry[: close + 1], entry[close + 1 :]
        if close < 0 or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return None
    normal = normalise_host(host)
    return HostRule(normal, int(port) if port is not None else None) if normal else None


def host_allowed(destination: Destination, allowed: Iterable[str]) -> bool:
    """Does some entry of ``allowed`` name the destination's host (and port, if it names one)?"""
    for entry in allowed:
        rule = parse_host_rule(entry)
        if rule and rule.host == destination.host and rule.port in (None, destination.port):
            return True
    return False
