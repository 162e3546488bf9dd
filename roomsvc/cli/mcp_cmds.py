"""``roomsvc mcp clients`` (operator): where roomsvc registered itself as an OAuth client
of MCP servers' authorization servers; ``roomsvc toolkit mcp``: the bridge (issue 17)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from roomsvc.cli.options import Parents, command
from roomsvc.client.http import ApiClient
from roomsvc.domain.project_secrets import KIND_MCP_CLIENT
from roomsvc.errors import Unauthenticated


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
