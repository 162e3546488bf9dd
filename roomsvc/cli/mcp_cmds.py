"""``roomsvc mcp clients`` (operator): where roomsvc registered itself as an OAuth client
of MCP servers' authorization servers; ``roomsvc toolkit mcp``: the bridge (issue 17)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from roomsvc.cli.options import Parents, command, settings_from, usage
from roomsvc.client.http import ApiClient
from roomsvc.config import client_defaults
from roomsvc.domain.project_secrets import KIND_MCP_CLIENT
from roomsvc.errors import InvalidRequest, Unauthenticated


def register(sub: Any, parents: Parents) -> None:
    mcp = sub.add_parser("mcp", help="MCP servers' OAuth registrations (operator token)", description=(
        "What roomsvc registered where: dynamic client registrations at MCP servers' authorization servers, "
        "kept encrypted as project secrets and reused per authorization server."))
    m_sub = mcp.add_subparsers(dest="mcp_command", metavar="COMMAND", required=True)
    command(m_sub, "clients", cmd_clients, parents=[parents.client], help="list the registrations (never a secret)")


def cmd_clients(args: argparse.Namespace) -> int:
    if not args.token:
        raise Unauthenticated("no token: pass --token (an operator token) or set ROOMSVC_TOKEN")

    async def go() -> list[dict[str, Any]]:
        async with ApiClient(args.url, args.token) as client:
            return list((await client.request("GET", "/v1/admin/secrets", params={"type": KIND_MCP_CLIENT}))["secrets"])

    rows = asyncio.run(go())
    if not rows:
        print("no MCP client registrations yet")
    for row in rows:
        issuer, _, client_id = str(row.get("name", "")).partition(" client_id=")
        print(f"{issuer}\tclient_id={client_id}\tregistered={row.get('created_at')}\tsecret={row.get('id')}")
    return 0


# -- roomsvc toolkit mcp ----------------------------------------------------------------------------


def register_toolkit(t_sub: Any, parents: Parents) -> None:
    # --url is the MCP server's (as in MeshAgent's `mcp http`): roomsvc's own URL is --server
    p = command(t_sub, "mcp", cmd_toolkit_mcp, parents=[parents.local, parents.room],
                help="bridge a remote MCP server into the room as a toolkit", description=(
        "Join the room as a toolkit participant that lists and calls the tools of an MCP server (Streamable HTTP). "
        "When the server is an OAuth resource server, roomsvc discovers its authorization server, registers, asks "
        "the person to consent through the room, keeps and refreshes the credential; callers never see the token."))
    defaults = client_defaults()
    p.add_argument("--url", required=True, metavar="MCP_URL", help="the MCP server's Streamable HTTP endpoint")
    p.add_argument("--server", default=defaults["url"], help="roomsvc's base URL (ROOMSVC_URL; default %(default)s)")
    p.add_argument("--token", default=defaults["token"], help="the toolkit's participant token (ROOMSVC_TOKEN)")
    p.add_argument("--name", help="the toolkit's name in the room (default: the URL's host)")
    p.add_argument("--for-identity", metavar="P", help=(
        "the person whose credential is used for every caller (asked to consent when needed); default: the "
        "calling person, and agents are refused"))
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="a static header (repeatable)")
    p.add_argument("--header-secret", action="append", default=[], metavar="SPEC",
                   help="HEADER:FORMAT resolved from the token identity's room secrets at start (repeatable)")


def _static_headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or not name.strip().isascii() or " " in name.strip():
            raise InvalidRequest("--header takes 'NAME: VALUE', e.g. --header 'X-Api-Version: 2'")
        headers[name.strip()] = value.strip()
    return headers


def cmd_toolkit_mcp(args: argparse.Namespace) -> int:
    from urllib.parse import quote, urlsplit

    from roomsvc.client.mcp_bridge import McpBridge
    from roomsvc.client.room import RoomConnection
    from roomsvc.integrations.mcp_client import McpUpstream
    from roomsvc.logs import setup_logging

    if not args.token:
        raise Unauthenticated("no token: pass --token or set ROOMSVC_TOKEN")
    settings = settings_from(args)
    setup_logging(level=settings.server.log_level, json_lines=settings.server.log_json)
    with usage():
        parts = urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("--url must be an absolute http(s) URL of the MCP server")
        headers = _static_headers(args.header)
    name = args.name or parts.hostname

    async def go() -> int:
        if args.header_secret:
            async with ApiClient(args.server, args.token) as client:
                resolved = await client.request("POST", f"/v1/rooms/{quote(args.room, safe='')}/headers",
                                                json_body={"header_secrets": args.header_secret, "destination": args.url})
                headers.update({h["name"]: h["value"] for h in resolved["headers"]})
        upstream = McpUpstream(args.url, headers=headers, timeout=settings.mcp.upstream_timeout)
        async with await RoomConnection.open(args.server, args.room, args.token) as conn:
            bridge = McpBridge(conn, upstream, url=args.url, name=name, for_identity=args.for_identity,
                               consent_timeout=settings.oauth.flow_timeout, expiry_margin=settings.oauth.refresh_margin + 1)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            print(f"MCP toolkit {name!r} joined room {args.room!r} as participant {conn.participant_id}", file=sys.stderr, flush=True)
            await bridge.run(stop)
            print("MCP toolkit stopped", file=sys.stderr)
        return 0

    return asyncio.run(go())
