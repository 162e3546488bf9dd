"""``roomsvc service ...``: room service specs and their runs, through the admin API (operator token)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from roomsvc.cli.options import Parents, command, usage
from roomsvc.cli.terminal import printable
from roomsvc.client.http import ApiClient
from roomsvc.domain.service_templates import parse_template
from roomsvc.errors import InvalidRequest, Unauthenticated
from roomsvc.integrations.spec_yaml import load_document

#: a start pulls the image first: wait for it longer than for other calls
START_TIMEOUT = 900.0


def register(sub: Any, parents: Parents) -> None:
    service = sub.add_parser("service", help="room services (operator token)", description=(
        "Room services: specs stored per room (YAML in MeshAgent's shape, see docs/services.md) and run by the server "
        "as podman containers or host processes, with their environment resolved from the vault."))
    s_sub = service.add_subparsers(dest="service_command", metavar="COMMAND", required=True)
    in_room = [parents.client, parents.room]
    p = command(s_sub, "create", cmd_create, parents=in_room, help="store a service spec from a YAML file")
    p.add_argument("--file", "-f", required=True, metavar="PATH|-", help="the spec (YAML); - reads stdin")
    p.add_argument("--replace", action="store_true", help="overwrite a spec of the same name")
    command(s_sub, "list", cmd_list, parents=in_room, help="list the room's service specs (JSON)")
    for name, func, text in (
        ("show", cmd_show, "print a service's spec (JSON)"),
        ("delete", cmd_delete, "stop a service and delete its spec"),
        ("start", cmd_start, "start a service (says why it could not)"),
        ("stop", cmd_stop, "stop a service"),
        ("status", cmd_status, "print a service's state (JSON)"),
    ):
        p = command(s_sub, name, func, parents=in_room, help=text)
        p.add_argument("name", metavar="NAME")
    p = command(s_sub, "install", cmd_install, parents=in_room, help="install a ServiceTemplate", description=(
        "Install a ServiceTemplate: variables annotated meshagent.secret.* are stored as room secrets for the "
        "annotated identity (never rendered into the spec), the others are rendered into it, and the service is "
        "saved. Values not given with --value are asked for (hidden input for obscure variables)."))
    p.add_argument("template", metavar="TEMPLATE", help="the template file (YAML); - reads stdin")
    p.add_argument("--value", action="append", default=[], metavar="NAME=VALUE",
                   help="a variable's value (repeatable); prefer the hidden prompt for secret variables")
    p.add_argument("--replace", action="store_true", help="overwrite a service of the same name")
    p = command(s_sub, "logs", cmd_logs, parents=in_room, help="print a service's recent output (secret values masked)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--tail", type=int, default=0, help="only the last N lines")


def _run(args: argparse.Namespace, work: Callable[[ApiClient], Awaitable[None]], *, timeout: float = 30.0) -> int:
    if not args.token:
        raise Unauthenticated("no token: pass --token or set ROOMSVC_TOKEN (an operator token: roomsvc token --operator)")

    async def go() -> None:
        async with ApiClient(args.url, args.token, timeout=timeout) as client:
            await work(client)

    asyncio.run(go())
    return 0


def _base(args: argparse.Namespace, name: str | None = None, suffix: str = "") -> str:
    path = f"/v1/admin/rooms/{quote(args.room, safe='')}/services"
    return path if name is None else f"{path}/{quote(name, safe='')}{suffix}"


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def cmd_create(args: argparse.Namespace) -> int:
    with usage():
        text = _read(args.file)

    async def work(client: ApiClient) -> None:
        result = await client.request("POST", _base(args), json_body={"yaml": text, "replace": args.replace})
        print(f"stored service {result['service']['name']!r} in room {args.room!r}", file=sys.stderr)

    return _run(args, work)


def cmd_install(args: argparse.Namespace) -> int:
    with usage():
        text = _read(args.template)
        values: dict[str, str] = {}
        for item in args.value:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise InvalidRequest("--value takes NAME=VALUE")
            values[name] = value
        template = parse_template(load_document(text))
    for v in template.variables:
        if v.name in values:
            continue
        if not sys.stdin.isatty():
            if v.optional:
                continue
            with usage():
                raise InvalidRequest(f"no value for variable {v.name!r}: pass --value {v.name}=... or run in a terminal")
        label = f"{v.title or v.name}{' (optional)' if v.optional else ''}{f' [{chr(47).join(v.enum)}]' if v.enum else ''}: "
        answer = getpass.getpass(label) if v.obscure or v.secret_id else input(label)
        if answer or not v.optional:
            values[v.name] = answer

    async def work(client: ApiClient) -> None:
        body = {"template": text, "values": values, "replace": args.replace}
        result = await client.request("POST", f"/v1/admin/rooms/{quote(args.room, safe='')}/service-templates", json_body=body)
        stored = [f"{v.secret_identity}/{v.secret_id}" for v in template.variables if v.secret_id and values.get(v.name)]
        print(f"installed service {result['service']['name']!r} in room {args.room!r}"
              + (f"; stored room secrets {', '.join(stored)}" if stored else ""), file=sys.stderr)

    return _run(args, work)


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {path}: {type(exc).__name__}") from None


def cmd_list(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        _print((await client.request("GET", _base(args)))["services"])

    return _run(args, work)


def cmd_show(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        _print((await client.request("GET", _base(args, args.name)))["service"])

    return _run(args, work)


def cmd_delete(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        await client.request("DELETE", _base(args, args.name))
        print(f"deleted service {args.name!r}", file=sys.stderr)

    return _run(args, work)


def cmd_start(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        print(f"starting {args.name!r} (resolving its environment, pulling its image)...", file=sys.stderr)
        status = (await client.request("POST", _base(args, args.name, "/start")))["status"]
        print(f"{args.name}: {status['state']} ({status['runner']} {printable(str(status['id']))})", file=sys.stderr)

    return _run(args, work, timeout=START_TIMEOUT)


def cmd_stop(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        status = (await client.request("POST", _base(args, args.name, "/stop")))["status"]
        print(f"{args.name}: {status['state']}", file=sys.stderr)

    return _run(args, work, timeout=120.0)


def cmd_status(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        _print((await client.request("GET", _base(args, args.name, "/status")))["status"])

    return _run(args, work)


def cmd_logs(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        result = await client.request("GET", _base(args, args.name, "/logs"), params={"tail": args.tail or None})
        for line in result["logs"]:
            print(printable(line))  # a service's output may hold terminal escapes

    return _run(args, work)
