"""The pure host rule: hostile URL variants against an allow list, no network."""

from __future__ import annotations

import pytest

from roomsvc.domain.destinations import host_allowed, parse_destination, parse_host_rule
from roomsvc.errors import InvalidRequest

ALLOWED = ["api.github.com", "uploads.example.com:8443", "[2001:db8::1]:443", "bücher.example", "*.wild.example"]


@pytest.mark.parametrize("url", [
    "https://api.github.com/user", "HTTPS://API.GitHub.COM:443/x?y=1", "http://api.github.com:8080/",
    "https://uploads.example.com:8443/up", "https://[2001:db8::1]/", "https://BÜCHER.example/",
    "https://xn--bcher-kva.example/",
])
def test_exact_hosts_match(url: str) -> None:
    assert host_allowed(parse_destination(url), ALLOWED)


@pytest.mark.parametrize("url", [
    "https://api.github.com.evil.test/", "https://evil.test/api.github.com", "https://evilapi.github.com/",
    "https://github.com/", "https://api.github.com./", "https://uploads.example.com/", "https://uploads.example.com:443/",
    "http://[2001:db8::1]/", "https://[2001:db8::2]/", "https://a.wild.example/", "https://b.wild.example/x",
    "https://evil.test/?host=api.github.com", "https://evil.test/#", "https://0x7f.0.0.1/",
])
def test_other_hosts_do_not(url: str) -> None:
    try:
        destination = parse_destination(url)
    except InvalidRequest:
        return
    assert not host_allowed(destination, ALLOWED)


@pytest.mark.parametrize("url", [
    "https://api.github.com@evil.test/", "https://api.github.com:443@evil.test/", "https://user:pw@api.github.com/",
    "https://api.github.com\\@evil.test/", "https://evil.test\\api.github.com/", "https://evil.test#@api.github.com/",
    "ftp://api.github.com/", "javascript://api.github.com/", "//api.github.com/", "https:api.github.com",
    "https://api.github.com /", "https://api.github.com\t/", "https://api.github.com\r\n/", " https://api.github.com/",
    "https://%61pi.github.com/", "https://api.github.com:99999/", "https://api.github.com:0/", "https://[::1%25eth0]/",
    "https:///", "", "x" * 3000, None, 42,
])
def test_confusing_urls_are_refused(url: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_destination(url)


def test_allow_list_entries() -> None:
    assert parse_host_rule("API.GitHub.com") == parse_host_rule("api.github.com")
    assert parse_host_rule("api.github.com:443").port == 443  # type: ignore[union-attr]
    for bad in ("*.example.com", "a:b:c", "host:0", "host:x", "[::1", "", None, "https://api.github.com"):
        assert parse_host_rule(bad) is None, bad
