"""Commands that talk to a running server over its HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from roomsvc.cli.progress import ProgressBar
from roomsvc.cli.terminal import printable
from roomsvc.domain.project_secrets import parse_pairs
from roomsvc.errors import InvalidRequest, NotFound, Unauthenticated
from roomsvc.client.http import ApiClient


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
        body: dict[str, Any] = {"name": args.name, "data": parse_pairs(text)}
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
