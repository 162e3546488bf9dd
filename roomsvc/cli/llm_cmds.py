"""``roomsvc llm usage``: tokens used through the LLM proxy, per room, identity, provider
and model (operator token)."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from typing import Any

from roomsvc.cli.client_cmds import _run
from roomsvc.cli.options import Parents, command, usage
from roomsvc.cli.terminal import printable
from roomsvc.client.http import ApiClient
from roomsvc.errors import InvalidRequest


def register(sub: Any, parents: Parents) -> None:
    llm = sub.add_parser("llm", help="the LLM proxy (usage)", description=(
        "The LLM proxy: agents call OpenAI and Anthropic through roomsvc with their participant token; "
        "see docs/llm.md."))
    l_sub = llm.add_subparsers(dest="llm_command", metavar="COMMAND", required=True)
    p = command(l_sub, "usage", cmd_usage, parents=[parents.client, parents.json],
                help="tokens used per room, identity, provider and model (operator token)", description=(
        "Show calls and tokens used through the LLM proxy, summed per room, identity, provider and model "
        "(operator token)."))
    p.add_argument("--room", help="only this room")
    p.add_argument("--identity", help="only this identity")
    p.add_argument("--since", help="seconds ago (e.g. 86400), an epoch timestamp, or an ISO date/time (UTC), "
                                   "e.g. 2025-01-31 or 2025-01-31T12:00:00")


def parse_since(text: str, *, now: float) -> float:
    """Seconds ago, an epoch timestamp or an ISO date/time (UTC unless it says otherwise).

    Raises:
        InvalidRequest: none of these.
    """
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRequest("--since takes seconds ago (e.g. 86400), an epoch timestamp or an ISO date "
                                 "(e.g. 2025-01-31)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if value < 0:
        raise InvalidRequest("--since must not be negative")
    return value if value > 1_000_000_000 else now - value


def cmd_usage(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        with usage():
            since = parse_since(args.since, now=time.time())

    async def work(client: ApiClient) -> None:
        rows = (await client.request("GET", "/v1/admin/llm/usage",
                                     params={"room": args.room, "identity": args.identity, "since": since}))["usage"]
        if args.json:
            print(json.dumps(rows, indent=2, sort_keys=True))
            return
        if not rows:
            print("no LLM usage recorded" + (" in that range" if since or args.room or args.identity else ""))
            return
        head = ("ROOM", "IDENTITY", "PROVIDER", "MODEL", "CALLS", "INPUT", "OUTPUT", "TOTAL")
        table = [head] + [
            tuple(printable(str(r[k])) for k in ("room", "identity", "provider", "model"))
            + (str(r["requests"]), str(r["input_tokens"]), str(r["output_tokens"]), str(r["total_tokens"]))
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for row in table:
            print("  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        total = sum(r["total_tokens"] for r in rows)
        print(f"{sum(r['requests'] for r in rows)} calls, {total} tokens")

    return _run(args, work)
