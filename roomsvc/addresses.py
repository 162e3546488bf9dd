"""Which IP addresses count as public: the one rule shared by the toolkit proxy's resolver
(client side) and the server's outbound resolver in production mode."""

from __future__ import annotations

import ipaddress


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local,
    multicast, reserved and unspecified ones (an IPv4-mapped IPv6 address is judged as its IPv4
    address; a zone suffix ``%eth0`` is ignored)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified)
