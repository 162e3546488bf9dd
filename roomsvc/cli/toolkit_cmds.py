"""``roomsvc toolkit headers`` and ``roomsvc toolkit proxy``: credentials as HTTP headers."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
from typing import Any
from urllib.parse import quote

from roomsvc.cli.options import Parents, command, settings_from, usage
from roomsvc.client.http import ApiClient
from roomsvc.clock import SystemClock
from roomsvc.errors import InvalidRequest, Unauthenticated


def register(sub: Any, parents: Parents) -> None:
    toolkit = sub.add_parser("toolkit", help="secret headers for toolkits", description=(
        "Resolve HEADER:FORMAT specs (e.g. 'Authorization:Bearer {github}') from the token identity's room secrets."))
    t_sub = toolkit.add_subparsers(dest="toolkit_command", metavar="COMMAND", required=True)

    p = command(t_sub, "headers", cmd_headers, parents=[parents.client, parents.room], help="print resolved headers",
                description="Print resolved headers for scripts.")
    p.add_argument("--header-secret", action="append", required=True, metavar="SPEC", help="HEADER:FORMAT (repeatable)")
    p.add_argument("--for-identity", help="another identity's secrets (admin grant)")
    p.add_argument("--destination", metavar="URL", help=(
        "the URL the headers will be sent to; required for a connector credential with allowed_hosts "
        "and for a use-only token"))
    p.add_argument("--format", choices=("json", "curl"), default="json")

    # the proxy reads settings (its timeouts, cache and allow_insecure_loopback) as well as the server's address
    p = command(t_sub, "proxy", cmd_proxy, parents=[parents.local, parents.client, parents.room],
                help="run a sidecar proxy that injects the headers", description=(
        "Forward every request to --upstream with the resolved headers injected; the toolkit talks to the "
        "proxy and never sees the credential. Headers are re-resolved before OAuth tokens expire."))
    p.add_argument("--listen", default="127.0.0.1:8781", metavar="HOST:PORT",
                   help="where the proxy listens (port 0 = any); loopback unless --allow-remote")
    p.add_argument("--allow-remote", action="store_true", help=(
        "allow a --listen address other than loopback: anyone who can reach it uses the credential"))
    p.add_argument("--upstream", required=True, metavar="URL")
    p.add_argument("--header-secret", action="append", required=True, metavar="SPEC", help="HEADER:FORMAT (repeatable)")
    p.add_argument("--for-identity", help="another identity's secrets (admin grant)")

    from roomsvc.cli import mcp_cmds  # issue 17: toolkit mcp

    mcp_cmds.register_toolkit(t_sub, parents)


async def _resolve(client: ApiClient, args: argparse.Namespace, destination: str | None) -> list[dict[str, Any]]:
    body = {"header_secrets": args.header_secret, "for_identity": args.for_identity, "destination": destination}
    result = await client.request("POST", f"/v1/rooms/{quote(args.room, safe='')}/headers",
                                  json_body={k: v for k, v in body.items() if v is not None})
    return result["headers"]


def cmd_headers(args: argparse.Namespace) -> int:
    if not args.token:
        raise Unauthenticated("no token: pass --token or set ROOMSVC_TOKEN")

    async def go() -> list[dict[str, Any]]:
        async with ApiClient(args.url, args.token) as client:
            return await _resolve(client, args, args.destination)

    headers = asyncio.run(go())
    if args.format == "json":
        print(json.dumps({h["name"]: h["value"] for h in headers}, indent=2))
    else:
        print(" ".join(f"-H {shlex.quote(h['name'] + ': ' + h['value'])}" for h in headers))
    return 0


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidRequest("--listen takes HOST:PORT, e.g. 127.0.0.1:8781")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def cmd_proxy(args: argparse.Namespace) -> int:
    from roomsvc.client.proxy import HeaderCache, SidecarProxy, check_listen, check_upstream, serve_proxy
    from roomsvc.logs import setup_logging

    if not args.token:
        raise Unauthenticated("no token: pass --token or set ROOMSVC_TOKEN")
    settings = settings_from(args)
    setup_logging(level=settings.server.log_level, json_lines=settings.server.log_json)
    allow_private = settings.server.allow_insecure_loopback
    with usage():
        upstream = check_upstream(args.upstream, allow_private=allow_private)
        host, port = _listen_address(args.listen)
        check_listen(host, allow_remote=args.allow_remote)

    async def go() -> int:
        async with ApiClient(args.url, args.token) as client:
            # the server checks the credential's allowed hosts against the URL it will reach
            cache = HeaderCache(lambda: _resolve(client, args, str(upstream)), clock=SystemClock(),
                                cache_ttl=settings.proxy.cache_ttl, refresh_margin=settings.proxy.refresh_margin)
            await cache.get()  # fail at start-up, not on the first request, if a spec is wrong
            proxy = SidecarProxy(upstream=upstream, headers=cache, allow_private=allow_private,
                                 connect_timeout=settings.proxy.connect_timeout, timeout=settings.proxy.timeout)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await serve_proxy(proxy, host, port, stop)
            print("proxy stopped", file=sys.stderr)
            return 0

    return asyncio.run(go())
