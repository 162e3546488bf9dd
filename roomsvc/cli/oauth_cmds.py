"""Commands that take part in a room over the native websocket: ``roomsvc room listen``,
``roomsvc room secret oauth`` and ``roomsvc room secret request``.

``room listen`` lets a person answer without writing a client: it prints consent links
and secret requests as they come and asks, at a prompt, whether to provide or reject.
Answers are read from the terminal (values without echo), or line by line from a
pipe, so scripts can answer too: ``p`` then the value, or ``r`` then a reason.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from roomsvc.cli.client_cmds import RoomGroups
from roomsvc.cli.options import Parents, command, usage
from roomsvc.cli.terminal import printable
from roomsvc.client.room import RoomConnection
from roomsvc.errors import InvalidRequest, RoomsvcError, Unauthenticated


def register(rooms: RoomGroups, parents: Parents) -> None:
    """Add ``room listen``, ``room secret oauth`` and ``room secret request`` to the room groups."""
    p = command(rooms.room, "listen", cmd_room_listen, parents=[parents.client, parents.room],
                help="join a room and answer consent and secret requests", description=(
        "Join the room as a participant (the token's identity), print OAuth consent links, secret requests and "
        "messages sent to it as they come, and offer provide / reject at a prompt (or read answers line by line "
        "from a pipe). What others sent is printed with control characters escaped."))
    p.add_argument("--exit-after", type=int, metavar="N", help="stop after N requests were handled (default: run until Ctrl-C)")

    text = "ask a participant for an OAuth token and print it"
    p = command(rooms.secret, "oauth", cmd_secret_oauth, parents=rooms.secret_parents, help=text, description=text)
    p.add_argument("--from-participant-id", required=True, help="the participant who consents (see `room listen`)")
    p.add_argument("--connector", help="a connector configured on the server (config/connectors/*.toml)")
    p.add_argument("--client-id", help="inline client (allowed only for endpoints in oauth.inline_endpoints)")
    p.add_argument("--authorization-endpoint")
    p.add_argument("--token-endpoint")
    p.add_argument("--scopes", help="comma-separated")
    p.add_argument("--client-secret")
    p.add_argument("--redirect-uri", help="only for participants that run the redirect in their own app")
    p.add_argument("--delegate-to", help="store the credential for this identity instead")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the consent (default %(default)s)")

    text = "ask a participant for a secret and print it"
    p = command(rooms.secret, "request", cmd_secret_request, parents=rooms.secret_parents, help=text, description=text)
    p.add_argument("--from-participant-id", required=True)
    p.add_argument("--secret-url", required=True, help="what is asked for: MeshAgent's url, an opaque key such as "
                   "secret://example (--url is the server's address here)")
    p.add_argument("--type", default="application/octet-stream")
    p.add_argument("--delegate-to", help="store the answer for this identity instead")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--out", "-o", default="-", metavar="PATH|-", help="write the value to a file (default stdout)")


def _err(text: str) -> None:
    print(printable(text), file=sys.stderr, flush=True)


def _out(text: str, *, gap: bool = False) -> None:
    """One line of what the room sent: escaped, so a participant cannot rewrite the
    terminal; ``gap`` puts an empty line before it."""
    print(("\n" if gap else "") + printable(text), flush=True)


def _run(args: argparse.Namespace, work: Callable[[RoomConnection], Awaitable[int]]) -> int:
    if not args.token:
        raise Unauthenticated("no token: pass --token or set ROOMSVC_TOKEN")

    async def go() -> int:
        conn = await RoomConnection.open(args.url, args.room, args.token)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


# -- roomsvc room secret oauth ----------------------------------------------------------------------


def cmd_secret_oauth(args: argparse.Namespace) -> int:
    with usage():
        data = _oauth_request(args)

    async def work(conn: RoomConnection) -> int:
        _err(f"asking participant {args.from_participant_id} to consent (waiting up to {args.timeout:g} s)...")
        grant = await conn.request("secrets.request_oauth_token", data, timeout=args.timeout + 10)
        cred = grant.get("credential", {})
        account = f" as {cred['subject']}" if cred.get("subject") else ""
        expires = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(grant.get("expires_at") or 0))
        _err(f"got a token for {cred.get('connector') or cred.get('id')}{account}, stored as {cred.get('owner')}'s "
             f"secret {cred.get('id')!r}; it expires at {expires}")
        print(grant["access_token"])
        return 0

    return _run(args, work)


def _oauth_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request's data from the command line. Raises: InvalidRequest."""
    data: dict[str, Any] = {"from_participant_id": args.from_participant_id, "timeout": args.timeout}
    if args.connector:
        data["connector"] = args.connector
    elif args.authorization_endpoint or args.token_endpoint or args.client_id:
        if not (args.authorization_endpoint and args.token_endpoint and args.client_id):
            raise InvalidRequest("an inline client needs --client-id, --authorization-endpoint and --token-endpoint")
        data["oauth"] = {
            "client_id": args.client_id, "authorization_endpoint": args.authorization_endpoint,
            "token_endpoint": args.token_endpoint,
            "scopes": [s for s in (args.scopes or "").split(",") if s],
            **({"client_secret": args.client_secret} if args.client_secret else {}),
        }
    else:
        raise InvalidRequest("name a --connector, or give an inline client (--client-id, --authorization-endpoint, --token-endpoint)")
    if args.delegate_to:
        data["delegate_to"] = args.delegate_to
    if args.redirect_uri:
        data["redirect_uri"] = args.redirect_uri
    return data


# -- roomsvc room secret request ----------------------------------------------------------------------


def cmd_secret_request(args: argparse.Namespace) -> int:
    data: dict[str, Any] = {
        "url": args.secret_url, "type": args.type, "from_participant_id": args.from_participant_id, "timeout": args.timeout,
    }
    if args.delegate_to:
        data["delegate_to"] = args.delegate_to

    async def work(conn: RoomConnection) -> int:
        _err(f"asking participant {args.from_participant_id} for {args.secret_url} (waiting up to {args.timeout:g} s)...")
        result = await conn.request("secrets.request_secret", data, timeout=args.timeout + 10)
        value = base64.b64decode(result["value"])
        meta = result["secret"]
        _err(f"received {len(value)} bytes; stored as {meta['owner']}'s secret {meta['id']!r} (type {meta['type']})")
        if args.out == "-":
            sys.stdout.buffer.write(value)
            sys.stdout.buffer.flush()
        else:
            Path(args.out).write_bytes(value)
        return 0

    return _run(args, work)


# -- roomsvc room listen ---------------------------------------------------------------------------------


class _Answers:
    """Lines from the person: the terminal (values hidden) or a pipe, read off the loop."""

    def __init__(self) -> None:
        self.tty = sys.stdin.isatty()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        if not self.tty:
            loop = asyncio.get_running_loop()

            def pump() -> None:
                for line in sys.stdin:
                    loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip("\r\n"))
                loop.call_soon_threadsafe(self._lines.put_nowait, None)

            threading.Thread(target=pump, name="stdin", daemon=True).start()

    async def ask(self, prompt: str, *, secret: bool = False) -> str | None:
        """One answer; None when input has ended."""
        if self.tty:
            read = getpass.getpass if secret else input
            try:
                return await asyncio.get_running_loop().run_in_executor(None, read, prompt)
            except EOFError:
                return None
        print(prompt, end="", flush=True)
        return await self._lines.get()


def cmd_room_listen(args: argparse.Namespace) -> int:
    async def work(conn: RoomConnection) -> int:
        me = conn.welcome.get("participant", {})
        _out(f"joined room {args.room} as participant {conn.participant_id} (identity {me.get('identity')})")
        print("waiting for consent and secret requests; stop with Ctrl-C", flush=True)
        answers = _Answers()
        handled = 0
        while args.exit_after is None or handled < args.exit_after:
            push = await conn.next_push()
            if push is None:
                _err("the connection to roomsvc closed")
                return 1
            if await _handle(conn, answers, push.get("type", ""), push.get("data") or {}):
                handled += 1
        return 0

    return _run(args, work)


async def _handle(conn: RoomConnection, answers: _Answers, kind: str, data: dict[str, Any]) -> bool:
    sender = (data.get("from") or {}).get("identity", "?")
    if kind == "secrets.request_oauth_token":
        request = data.get("request") or {}
        what = request.get("connector") or (request.get("oauth") or {}).get("authorization_endpoint", "?")
        _out(f"OAuth consent request {data.get('request_id')} from {sender} for {what}", gap=True)
        _print_ownership(data, "credential")
        if data.get("start_url"):
            _out("  open this link in your browser to connect your account:")
            _out(f"  {data['start_url']}")
            answer = await answers.ask("  type r to reject, or press Enter once you have opened the link: ")
            if answer and answer.strip().lower() in ("r", "reject"):
                await _reply(conn, "secrets.reject_oauth_authorization", {"request_id": data.get("request_id"), "error": "rejected"})
        return True
    if kind == "secrets.request_secret":
        request = data.get("request") or {}
        _out(f"secret request {data.get('request_id')} from {sender}: {request.get('url')} (type {request.get('type')})", gap=True)
        _print_ownership(data, "value")
        choice = ((await answers.ask("  provide (p) or reject (r)? ")) or "r").strip().lower()
        if choice in ("p", "provide"):
            value = await answers.ask("  value: ", secret=True)
            if value is not None:
                await _reply(conn, "secrets.provide_secret", {"request_id": data.get("request_id"), "text": value})
                return True
        reason = "rejected" if answers.tty is False else ((await answers.ask("  reason (optional): ")) or "rejected")
        await _reply(conn, "secrets.reject_secret", {"request_id": data.get("request_id"), "error": reason})
        return True
    if kind == "secrets.request_ended":
        _out(f"request {data.get('request_id')} ended: {data.get('outcome')}")
    elif kind == "secrets.oauth_reauth_required":
        _out(f"your OAuth credential {data.get('id')!r} needs re-authorization ({data.get('reason')})", gap=True)
    elif kind == "message":
        _out(f"message from {sender} ({data.get('message_type')}): {_message_text(data.get('body'))}", gap=True)
    return False


def _print_ownership(data: dict[str, Any], what: str) -> None:
    owner, users = data.get("owner"), data.get("usable_by") or []
    if owner:
        _out(f"  the {what} will belong to {owner}; usable by {', '.join(str(u) for u in users)}")


def _message_text(body: Any) -> str:
    """A ``{"text": ...}`` body as its text, any other as JSON."""
    if isinstance(body, dict) and set(body) == {"text"} and isinstance(body["text"], str):
        return str(body["text"])
    return json.dumps(body, ensure_ascii=False)


async def _reply(conn: RoomConnection, kind: str, data: dict[str, Any]) -> None:
    try:
        await conn.request(kind, data)
    except RoomsvcError as exc:
        _err(f"  could not answer: {exc.message}")
        return
    print("  answered", flush=True)
