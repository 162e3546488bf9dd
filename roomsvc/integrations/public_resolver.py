"""Outbound OAuth and MCP discovery connect to public addresses only, in production mode.

The URL rules (:func:`roomsvc.domain.oauth.connectors.check_endpoint`) refuse a literal
loopback or private address and ``localhost``, but a name is only an address once it is
resolved: ``https://intranet.corp/``, the machine's own host name, or ``https://0x7f000001/``
(which the C resolver reads as 127.0.0.1) pass the literal check and would reach an
internal service. This resolver sits under the outbound session and drops every address
that is not public before any connection is made, so a hostile discovery document or
challenge cannot point roomsvc inside the network whatever name it uses (issue 17).

It is only installed with ``server.allow_insecure_loopback`` off. Hosts the operator
named (connectors' endpoints, ``mcp.trusted_servers``) are exempt: an internal identity
provider or MCP server the operator configured is the operator's choice. The
toolkit proxy's :class:`roomsvc.client.proxy.VettedResolver` is the model (the client
package stands apart from the server's code, hence this one of its own).
"""

from __future__ import annotations

import socket
from typing import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from roomsvc.addresses import is_public_address


class PrivateAddressRefused(OSError):
    """A name that resolves only to loopback, private or otherwise non-public addresses."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host[:100]} resolves only to loopback or private addresses")
        self.host = host[:100]




class PublicOnlyResolver(AbstractResolver):
    """Resolves with ``inner`` (the default resolver), keeping public addresses only,
    except for the ``exempt`` host names (compared without case or a trailing dot)."""

    def __init__(self, exempt: Iterable[str] = (), inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()
        self._exempt = frozenset(_name(h) for h in exempt if h)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if _name(host) in self._exempt:
            return results
        kept = [r for r in results if is_public_address(r["host"])]
        if not kept:
            raise PrivateAddressRefused(host)
        return kept

    async def close(self) -> None:
        await self._inner.close()


def _name(host: str) -> str:
    return host.rstrip(".").lower()
