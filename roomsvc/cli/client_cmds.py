"""Commands that talk to a running server over its HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from roomsvc.cli.options import Parents, command, usage
from roomsvc.cli.progress import ProgressBar
from roomsvc.cli.terminal import printable
from roomsvc.client.http import ApiClient
from roomsvc.domain.project_secrets import parse_pairs
from roomsvc.errors import InvalidRequest, NotFound, Unauthenticated


@dataclass(frozen=True)
class RoomGroups:
    """The ``room`` and ``room secret`` subcommands, for the websocket commands to join."""

    room: Any
    secret: Any
    #: --room and the client options, as every room secret command takes them
    secret_parents: list[argparse.ArgumentParser]


def register(sub: Any, parents: Parents) -> RoomGroups:
    """Add room, secret, keys, audit and backup (``token revoke`` is added with ``token``)."""
    client = [parents.client]
    rooms = _register_rooms(sub, parents)
    _register_project_secrets(sub, parents)

    keys = sub.add_parser("keys", help="encryption keys (operator token)", description="The vault's key-encryption keys.")
    k_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    command(k_sub, "status", cmd_keys_status, parents=client, help="list keys and how many values each protects")
    command(k_sub, "rotate", cmd_keys_rotate, parents=client, help="add a key and re-wrap every data key online (shows progress)")
    p = command(k_sub, "retire", cmd_keys_retire, parents=client, help="remove an old key once nothing uses it")
    p.add_argument("key_id")

    p = command(sub, "audit", cmd_audit, parents=[*client, parents.json], help="show the audit log",
                description="Show audit lines (operator token).")
    p.add_argument("--room")
    p.add_argument("--identity")
    p.add_argument("--since", help="seconds ago (e.g. 3600) or an epoch timestamp")
    p.add_argument("--limit", type=int, default=1000)
    audit_sub = p.add_subparsers(dest="audit_command", metavar="COMMAND", required=False)
    p = command(audit_sub, "prune", cmd_audit_prune, parents=[*client, parents.json],
                help="delete audit lines older than the retention", description=(
        "Delete audit lines older than the server's retention (secrets.audit_retention) and show what was "
        "deleted (operator token). A shorter --older-than is refused: lines younger than the retention are "
        "never deleted. With retention 0 (keep forever) nothing may be pruned."))
    p.add_argument("--older-than", type=float, metavar="SECONDS", help="delete lines older than this (default: the retention)")
    p.add_argument("--dry-run", action="store_true", help="only show what would be deleted")

    p = command(sub, "backup", cmd_backup, parents=client, help="consistent copy of the database", description=(
        "Ask the running server for a consistent copy of its database (SQLite backup API), written as NAME in "
        "its backup directory (server.backup_dir, default <data_dir>/backups) and never over an existing file. "
        "The copy holds ciphertext only; the master key is never in it."))
    p.add_argument("name", metavar="NAME", help="file name inside the server's backup directory, e.g. roomsvc-2025-01-31.db")
    return rooms


def _register_rooms(sub: Any, parents: Parents) -> RoomGroups:
    room = sub.add_parser("room", help="rooms and room secrets", description="Rooms and room secrets.")
    room_sub = room.add_subparsers(dest="room_command", metavar="COMMAND", required=True)
    p = command(room_sub, "create", cmd_room_create, parents=[parents.client], help="create a room (operator token)")
    p.add_argument("name")
    command(room_sub, "list", cmd_room_list, parents=[parents.client], help="list rooms (operator token)")

    secret = room_sub.add_parser("secret", help="room secrets of the token's identity", description="Room secrets.")
    s_sub = secret.add_subparsers(dest="secret_command", metavar="COMMAND", required=True)
    in_room = [parents.client, parents.room]

    def add(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        return command(s_sub, name, func, parents=in_room, help=help_text, description=help_text)

    p = add("set", "store a secret (a new version each time)", cmd_secret_set)
    p.add_argument("--id", required=True)
    src = p.add_argument_group("value source (exactly one)")
    src.add_argument("--text", help="the value as text")
    src.add_argument("--in", "-i", dest="in_path", metavar="PATH|-", help="read the value from a file or stdin")
    src.add_argument("--base64", dest="b64", help="the value in base64")
    p.add_argument("--type", help="MIME-like type tag")
    p.add_argument("--name")
    p.add_argument("--for-identity", help="store for another identity (admin grant)")
    p.add_argument("--delegated-to", help="delegate use of the secret to this identity")
    p.add_argument("--expected-version", type=int, help="compare-and-swap: only if the current version is this (0 = new)")

    p = add("get", "print a secret's value", cmd_secret_get)
    p.add_argument("--id", required=True)
    p.add_argument("--delegated-to")
    p.add_argument("--for-identity")
    p.add_argument("--out", "-o", default="-", metavar="PATH|-", help="write the value to a file (default stdout)")

    p = add("exists", "print true or false", cmd_secret_exists)
    p.add_argument("--id", required=True)
    p.add_argument("--delegated-to")
    p.add_argument("--for-identity")

    p = add("list", "list secrets (metadata only, as JSON)", cmd_secret_list)
    p.add_argument("--for-identity")

    p = add("delete", "delete a secret and all its versions", cmd_secret_delete)
    p.add_argument("id")
    p.add_argument("--delegated-to")
    p.add_argument("--for-identity")

    p = add("versions", "list kept versions of a secret", cmd_secret_versions)
    p.add_argument("--id", required=True)
    p.add_argument("--delegated-to")
    p.add_argument("--for-identity")
    return RoomGroups(room=room_sub, secret=s_sub, secret_parents=in_room)


def _register_project_secrets(sub: Any, parents: Parents) -> None:
    secret = sub.add_parser("secret", help="project secrets (operator token)", description="Project secrets: keys bags and image pull secrets.")
    kinds = secret.add_subparsers(dest="secret_kind", metavar="KIND", required=True)
    keys = kinds.add_parser("keys", help="KEY=VALUE bags for services (container.secrets)")
    k_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    pull = kinds.add_parser("pull", help="image pull secrets (container.pull_secret)")
    p_sub = pull.add_subparsers(dest="pull_command", metavar="COMMAND", required=True)
    client = [parents.client]

    for kind, group in (("keys", k_sub), ("pull", p_sub)):
        p = command(group, "create", cmd_project_create, parents=client, help=f"create or update a {kind} secret")
        p.add_argument("--id", required=True)
        p.add_argument("--name")
        if kind == "keys":
            p.add_argument("--data", required=True, help="space-separated KEY=VALUE pairs, or - to read them from stdin")
        else:
            p.add_argument("--server", required=True)
            p.add_argument("--username", required=True)
            p.add_argument("--password", help="the password (or - / omitted: read from stdin)")
            p.add_argument("--email")
        p.set_defaults(kind=kind)
        p = command(group, "list", cmd_project_list, parents=client, help=f"list {kind} secrets (metadata only)")
        p.set_defaults(kind=kind)
        p = command(group, "delete", cmd_project_delete, parents=client, help=f"delete a {kind} secret")
        p.add_argument("id")
        p.set_defaults(kind=kind)


def _run(args: argparse.Namespace, work: Callable[[ApiClient], Awaitable[int | None]]) -> int:
    if not args.token:
        raise Unauthenticated("no token: pass --token or set ROOMSVC_TOKEN")

    async def go() -> int:
        async with ApiClient(args.url, args.token) as client:
            return int(await work(client) or 0)

    return asyncio.run(go())


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _secret_path(args: argparse.Namespace, secret_id: str, suffix: str = "") -> str:
    return f"/v1/rooms/{quote(args.room, safe='')}/secrets/{quote(secret_id, safe='')}{suffix}"


def _addressing(args: argparse.Namespace) -> dict[str, Any]:
    return {"delegated_to": getattr(args, "delegated_to", None), "for_identity": getattr(args, "for_identity", None)}


# -- tokens ---------------------------------------------------------------------------------------


def cmd_token_revoke(args: argparse.Namespace) -> int:
    if args.room and not args.identity:
        with usage():
            raise InvalidRequest("--room narrows --identity; a --jti names one token already")
    body: dict[str, Any] = {"jti": args.jti} if args.jti is not None else {"identity": args.identity}
    if args.room:
        body["room"] = args.room

    async def work(client: ApiClient) -> None:
        revoked = (await client.request("POST", "/v1/admin/tokens/revoke", json_body=body))["revoked"]
        where = f" in room {revoked['room']!r}" if revoked.get("room") else ""
        if revoked["kind"] == "jti":
            print(f"revoked token {revoked['value']!r}", file=sys.stderr)
        else:
            print(f"revoked the tokens of {revoked['value']!r}{where} issued before now", file=sys.stderr)

    return _run(args, work)


# -- room secrets ---------------------------------------------------------------------------------


def _read_value(args: argparse.Namespace) -> bytes:
    given = [name for name, value in (("--text", args.text), ("--in", args.in_path), ("--base64", args.b64)) if value is not None]
    if len(given) != 1:
        raise InvalidRequest(
            "give exactly one value source: --text TEXT, --in PATH (or - for stdin), or --base64 B64"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if args.text is not None:
        return args.text.encode()
    if args.b64 is not None:
        try:
            return base64.b64decode(args.b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("--base64 is not valid base64") from None
    if args.in_path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(args.in_path).read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read --in {args.in_path!r}: {exc.strerror}") from None


def cmd_secret_set(args: argparse.Namespace) -> int:
    with usage():
        value = _read_value(args)
    body = {
        "value_base64": base64.b64encode(value).decode(), "type": args.type, "name": args.name,
        "expected_version": args.expected_version, **_addressing(args),
    }

    async def work(client: ApiClient) -> None:
        result = await client.request("PUT", _secret_path(args, args.id), json_body={k: v for k, v in body.items() if v is not None})
        meta = result["secret"]
        print(f"stored {meta['id']!r} version {meta['version']} ({len(value)} bytes)", file=sys.stderr)

    return _run(args, work)


def cmd_secret_get(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> int:
        try:
            result = await client.request("GET", _secret_path(args, args.id), params=_addressing(args))
        except NotFound:
            print(f"secret {args.id!r} not found", file=sys.stderr)
            return 1
        value = base64.b64decode(result["value_base64"])
        meta = result["secret"]
        print(printable(f"name={meta['name']} type={meta['type']} version={meta['version']} length={len(value)}"), file=sys.stderr)
        if args.out == "-":
            sys.stdout.buffer.write(value)
            sys.stdout.buffer.flush()
        else:
            Path(args.out).write_bytes(value)
        return 0

    return _run(args, work)


def cmd_secret_exists(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        result = await client.request("GET", _secret_path(args, args.id, "/exists"), params=_addressing(args))
        print("true" if result["exists"] else "false")

    return _run(args, work)


def cmd_secret_list(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        result = await client.request(
            "GET", f"/v1/rooms/{quote(args.room, safe='')}/secrets", params={"for_identity": args.for_identity}
        )
        _print_json(result["secrets"])

    return _run(args, work)


def cmd_secret_delete(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        await client.request("DELETE", _secret_path(args, args.id), params=_addressing(args))
        print(f"deleted {args.id!r}", file=sys.stderr)

    return _run(args, work)


def cmd_secret_versions(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        result = await client.request("GET", _secret_path(args, args.id, "/versions"), params=_addressing(args))
        _print_json(result["versions"])

    return _run(args, work)


# -- rooms ----------------------------------------------------------------------------------------


def cmd_room_create(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        await client.request("POST", "/v1/admin/rooms", json_body={"name": args.name})
        print(f"created room {args.name!r}", file=sys.stderr)

    return _run(args, work)


def cmd_room_list(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        _print_json((await client.request("GET", "/v1/admin/rooms"))["rooms"])

    return _run(args, work)


# -- project secrets ----------------------------------------------------------------------------


def cmd_project_create(args: argparse.Namespace) -> int:
    if args.kind == "keys":
        text = sys.stdin.read() if args.data == "-" else args.data
        with usage():
            pairs = parse_pairs(text)
        body: dict[str, Any] = {"name": args.name, "data": pairs}
    else:
        password = args.password
        if password in (None, "-"):
            password = sys.stdin.readline().rstrip("\n")
        body = {"name": args.name, "server": args.server, "username": args.username, "password": password, "email": args.email}

    async def work(client: ApiClient) -> None:
        result = await client.request(
            "PUT", f"/v1/admin/secrets/{args.kind}/{quote(args.id, safe='')}", json_body={k: v for k, v in body.items() if v is not None}
        )
        print(f"stored {args.kind} secret {args.id!r} version {result['secret']['version']}", file=sys.stderr)

    return _run(args, work)


def cmd_project_list(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        _print_json((await client.request("GET", "/v1/admin/secrets", params={"type": args.kind}))["secrets"])

    return _run(args, work)


def cmd_project_delete(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        await client.request("DELETE", f"/v1/admin/secrets/{args.kind}/{quote(args.id, safe='')}")
        print(f"deleted {args.kind} secret {args.id!r}", file=sys.stderr)

    return _run(args, work)


# -- keys, audit, backup ----------------------------------------------------------------------------


def cmd_keys_status(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        _print_json((await client.request("GET", "/v1/admin/keys"))["keys"])

    return _run(args, work)


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> int:
        bar = ProgressBar("re-wrapping data keys")
        final: dict[str, Any] = {}
        async for line in client.stream("POST", "/v1/admin/keys/rotate"):
            if "done" in line:
                bar.update(line["done"], line["total"])
            elif "error" in line:
                bar.finish()
                print(f"error: {printable(line['error']['message'])}; the old key still works, run the command again", file=sys.stderr)
                return 1
            else:
                final = line
        bar.finish()
        if "key_id" not in final:
            print("error: the server ended the rotation stream without a result; check `roomsvc keys status` "
                  "and the server log, then run the command again", file=sys.stderr)
            return 1
        print(f"new active key {final.get('key_id')}: {final.get('rewrapped', 0)} data keys re-wrapped, {final.get('failed', 0)} failed")
        if final.get("failed"):
            print("some data keys could not be re-wrapped (see the server log); the old key is still needed", file=sys.stderr)
            return 1
        print("retire old keys with `roomsvc keys retire KEY_ID` (see `roomsvc keys status`)", file=sys.stderr)
        return 0

    return _run(args, work)


def cmd_keys_retire(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        await client.request("DELETE", f"/v1/admin/keys/{quote(args.key_id, safe='')}")
        print(f"retired key {args.key_id}", file=sys.stderr)

    return _run(args, work)


def cmd_audit(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            value = float(args.since)
        except ValueError:
            with usage():
                raise InvalidRequest("--since takes seconds ago (e.g. 3600) or an epoch timestamp") from None
        since = value if value > 1_000_000_000 else time.time() - value

    async def work(client: ApiClient) -> None:
        result = await client.request(
            "GET", "/v1/admin/audit", params={"room": args.room, "identity": args.identity, "since": since, "limit": args.limit}
        )
        if args.json:
            _print_json(result["audit"])
            return
        for r in result["audit"]:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["time"]))
            # every field may hold what a client sent: escaped, so no line can rewrite the terminal
            line = (f"{stamp} {r['room'] or '-'} {r['actor']} {r['action']} {r['owner'] or '-'}/{r['secret_id'] or '-'} "
                    f"{r['channel']} {r['outcome']} {r['detail']}")
            print(printable(line).rstrip())

    return _run(args, work)


def cmd_audit_prune(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"dry_run": bool(args.dry_run)}
    if args.older_than is not None:
        body["older_than"] = args.older_than

    async def work(client: ApiClient) -> None:
        report = (await client.request("POST", "/v1/admin/audit/prune", json_body=body))["prune"]
        if args.json:
            _print_json(report)
            return
        verb = "would delete" if report["dry_run"] else "deleted"
        print(f"{verb} {report['deleted']} audit lines older than {_stamp(report['cutoff'])}", end="")
        if report["deleted"]:
            print(f", from {_stamp(report['oldest'])} to {_stamp(report['newest'])}:")
            for action, count in report["by_action"].items():
                print(f"  {action}: {count}")
        else:
            print()

    return _run(args, work)


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def cmd_backup(args: argparse.Namespace) -> int:
    async def work(client: ApiClient) -> None:
        # the server resolves the name inside its backup directory (server.backup_dir)
        result = await client.request("POST", "/v1/admin/backup", json_body={"name": args.name})
        print(f"backup written to {printable(result['backup'])} (ciphertext only; keep the master key separately)")

    return _run(args, work)
