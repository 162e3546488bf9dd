"""The toolkit sidecar proxy's checks, without a server (the proxy end to end is in
tests/headers/test_header_injection.py)."""

from __future__ import annotations

import pytest

from roomsvc.client.proxy import VettedResolver, check_upstream
from roomsvc.errors import InvalidRequest


def test_without_the_development_setting_loopback_and_private_upstreams_are_refused() -> None:
    for url in ("http://127.0.0.1:9/", "https://127.0.0.1/", "https://10.0.0.5/", "https://192.168.1.1/",
                "https://[::1]/", "https://169.254.169.254/", "https://localhost/", "https://[::ffff:127.0.0.1]/"):
        with pytest.raises(InvalidRequest):
            check_upstream(url, allow_private=False)
    assert check_upstream("https://api.github.com/", allow_private=False).host == "api.github.com"
    assert check_upstream("http://127.0.0.1:9/", allow_private=True).port == 9


async def test_the_resolver_drops_private_addresses_so_rebinding_cannot_reach_them() -> None:
    strict = VettedResolver(allow_private=False)
    try:
        with pytest.raises(OSError):
            await strict.resolve("localhost", 80)
    finally:
        await strict.close()
    relaxed = VettedResolver(allow_private=True)
    try:
        assert (await relaxed.resolve("localhost", 80))[0]["host"] in ("127.0.0.1", "::1")
    finally:
        await relaxed.close()
