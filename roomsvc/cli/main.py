"""``roomsvc``: serve, mint tokens, manage secrets and keys.

Every command takes ``--config`` and ``--data-dir``. Commands that talk to a running
server take ``--url`` (``ROOMSVC_URL``) and ``--token`` (``ROOMSVC_TOKEN``). Errors print
what went wrong and what to do, and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from roomsvc import __version__
from roomsvc.config import Settings, client_defaults, load_settings
from roomsvc.errors import ConfigError, RoomsvcError, Sealed

from roomsvc.cli import client_cmds, local_cmds, oauth_cmds
from roomsvc.cli.terminal import printable
from roomsvc.cli.toolkit_cmds import add_toolkit_commands


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="TOML settings file (default: ROOMSVC_CONFIG or config/roomsvc.toml)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (server.data_dir; default ./data)")


def _client(parser: argparse.ArgumentParser) -> None:
    defaults = client_defaults()
    parser.add_argument("--url", default=defaults["url"], help="server base URL (ROOMSVC_URL; default %(default)s)")
    parser.add_argument("--token", default=defaults["token"], help="participant token (ROOMSVC_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="roomsvc", description="Room server for people and AI agents, with a credential vault.")
    root.add_argument("--version", action="version", version=f"roomsvc {__version__}")
    sub = root.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("serve", help="start the server", description="Start the server (SQLite in the data directory by default).")
    _common(p)
    p.add_argument("--host", help="address to bind (server.host)")
    p.add_argument("--port", type=int, help="port to bind, 0 = any free port (server.port)")
    p.set_defaults(func=local_cmds.cmd_serve)

    p = sub.add_parser("token", help="print a signed participant token", description="Mint a participant token with the server's signing key.")
    _common(p)
    p.add_argument("--room", help="room grant")
    p.add_argument("--identity", help="participant identity (the token's name)")
    p.add_argument("--role", choices=("user", "agent", "tool"), default="user")
    p.add_argument("--api", action="append", default=[], metavar="SECTION", help="api grant section, e.g. secrets, admin (repeatable)")
    p.add_argument("--ttl", type=int, help="lifetime in seconds (default tokens.default_ttl)")
    p.add_argument("--operator", action="store_true", help="project-level token: no room, admin API (for /v1/admin/...)")
    p.add_argument("--use-only", action="store_true", help=(
        "secrets grant {\"use_only\": true}: resolve headers for a named destination, never read values "
        "(for `roomsvc toolkit proxy`; implies --api secrets)"))
    p.set_defaults(func=local_cmds.cmd_token)
    token_sub = p.add_subparsers(dest="token_command", metavar="COMMAND", required=False)
    r = token_sub.add_parser("revoke", help="revoke tokens on the running server (operator token)", description=(
        "Revoke one token by its jti, or every token of an identity issued before now (optionally in one room). "
        "Requests with those tokens are refused and open sockets on them close with 4001. Tokens minted "
        "afterwards work (a token minted in the same second as the revocation is revoked too)."))
    _common(r)
    _client(r)
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti", help="the token id (printed by `roomsvc token` on stderr)")
    which.add_argument("--identity", help="revoke the identity's tokens issued before now")
    r.add_argument("--room", help="with --identity: only its tokens for this room")
    r.set_defaults(func=client_cmds.cmd_token_revoke)

    p = sub.add_parser("apikey", help="print the signing key as a MeshAgent API key", description=(
        "Print the signing key as ma-<kid>-<project>-<secret>, so MeshAgent's ParticipantToken.to_jwt(api_key=...) "
        "mints tokens this server accepts. Treat it like a password."))
    _common(p)
    p.set_defaults(func=local_cmds.cmd_apikey)

    _room_commands(sub)
    _project_secret_commands(sub)
    _key_commands(sub)
    add_toolkit_commands(sub, _common, _client)

    p = sub.add_parser("audit", help="show the audit log", description="Show audit lines (operator token).")
    _common(p)
    _client(p)
    p.add_argument("--room")
    p.add_argument("--identity")
    p.add_argument("--since", help="seconds ago (e.g. 3600) or an epoch timestamp")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=client_cmds.cmd_audit)
    audit_sub = p.add_subparsers(dest="audit_command", metavar="COMMAND", required=False)
    prune = audit_sub.add_parser("prune", help="delete audit lines older than the retention", description=(
        "Delete audit lines older than the server's retention (secrets.audit_retention) and show what was "
        "deleted (operator token). A shorter --older-than is refused: lines younger than the retention are "
        "never deleted. With retention 0 (keep forever) nothing may be pruned."))
    _common(prune)
    _client(prune)
    prune.add_argument("--older-than", type=float, metavar="SECONDS", help="delete lines older than this (default: the retention)")
    prune.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(func=client_cmds.cmd_audit_prune)

    p = sub.add_parser("backup", help="consistent copy of the database", description=(
        "Ask the running server for a consistent copy of its database (SQLite backup API), written as NAME in "
        "its backup directory (server.backup_dir, default <data_dir>/backups) and never over an existing file. "
        "The copy holds ciphertext only; the master key is never in it."))
    _common(p)
    _client(p)
    p.add_argument("name", metavar="NAME", help="file name inside the server's backup directory, e.g. roomsvc-2025-01-31.db")
    p.set_defaults(func=client_cmds.cmd_backup)
    return root


def _room_commands(sub: Any) -> None:
    room = sub.add_parser("room", help="rooms and room secrets", description="Rooms and room secrets.")
    room_sub = room.add_subparsers(dest="room_command", metavar="COMMAND", required=True)

    p = room_sub.add_parser("create", help="create a room (operator token)")
    _common(p)
    _client(p)
    p.add_argument("name")
    p.set_defaults(func=client_cmds.cmd_room_create)

    p = room_sub.add_parser("list", help="list rooms (operator token)")
    _common(p)
    _client(p)
    p.set_defaults(func=client_cmds.cmd_room_list)

    p = room_sub.add_parser("listen", help="join a room and answer consent and secret requests", description=(
        "Join the room as a participant (the token's identity), print OAuth consent links, secret requests and "
        "messages sent to it as they come, and offer provide / reject at a prompt (or read answers line by line "
        "from a pipe). What others sent is printed with control characters escaped."))
    _common(p)
    _client(p)
    p.add_argument("--room", required=True)
    p.add_argument("--exit-after", type=int, metavar="N", help="stop after N requests were handled (default: run until Ctrl-C)")
    p.set_defaults(func=oauth_cmds.cmd_room_listen)

    secret = room_sub.add_parser("secret", help="room secrets of the token's identity", description="Room secrets.")
    s_sub = secret.add_subparsers(dest="secret_command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, func: Callable[..., Any]) -> argparse.ArgumentParser:
        p = s_sub.add_parser(name, help=help_text, description=help_text)
        _common(p)
        _client(p)
        p.add_argument("--room", required=True)
        p.set_defaults(func=func)
        return p

    p = add("set", "store a secret (a new version each time)", client_cmds.cmd_secret_set)
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

    p = add("get", "print a secret's value", client_cmds.cmd_secret_get)
    p.add_argument("--id", required=True)
    p.add_argument("--delegated-to")
    p.add_argument("--for-identity")
    p.add_argument("--out", "-o", default="-", metavar="PATH|-", help="write the value to a file (default stdout)")

    p = add("exists", "print true or false", client_cmds.cmd_secret_exists)
    p.add_argument("--id", required=True)
    p.add_argument("--delegated-to")
    p.add_argument("--for-identity")

    p = add("list", "list secrets (metadata only, as JSON)", client_cmds.cmd_secret_list)
    p.add_argument("--for-identity")

    p = add("delete", "delete a secret and all its versions", client_cmds.cmd_secret_delete)
    p.add_argument("id")
    p.add_argument("--delegated-to")
    p.add_argument("--for-identity")

    p = add("versions", "list kept versions of a secret", client_cmds.cmd_secret_versions)
    p.add_argument("--id", required=True)
    p.add_argument("--delegated-to")
    p.add_argument("--for-identity")

    p = add("oauth", "ask a participant for an OAuth token and print it", oauth_cmds.cmd_secret_oauth)
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

    p = add("request", "ask a participant for a secret and print it", oauth_cmds.cmd_secret_request)
    p.add_argument("--from-participant-id", required=True)
    p.add_argument("--secret-url", required=True, help="what is asked for: MeshAgent's url, an opaque key such as "
                   "secret://example (--url is the server's address here)")
    p.add_argument("--type", default="application/octet-stream")
    p.add_argument("--delegate-to", help="store the answer for this identity instead")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--out", "-o", default="-", metavar="PATH|-", help="write the value to a file (default stdout)")


def _project_secret_commands(sub: Any) -> None:
    secret = sub.add_parser("secret", help="project secrets (operator token)", description="Project secrets: keys bags and image pull secrets.")
    kinds = secret.add_subparsers(dest="secret_kind", metavar="KIND", required=True)
    keys = kinds.add_parser("keys", help="KEY=VALUE bags for services (container.secrets)")
    k_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    pull = kinds.add_parser("pull", help="image pull secrets (container.pull_secret)")
    p_sub = pull.add_subparsers(dest="pull_command", metavar="COMMAND", required=True)

    for kind, group in (("keys", k_sub), ("pull", p_sub)):
        p = group.add_parser("create", help=f"create or update a {kind} secret")
        _common(p)
        _client(p)
        p.add_argument("--id", required=True)
        p.add_argument("--name")
        if kind == "keys":
            p.add_argument("--data", required=True, help="space-separated KEY=VALUE pairs, or - to read them from stdin")
        else:
            p.add_argument("--server", required=True)
            p.add_argument("--username", required=True)
            p.add_argument("--password", help="the password (or - / omitted: read from stdin)")
            p.add_argument("--email")
        p.set_defaults(func=client_cmds.cmd_project_create, kind=kind)
        p = group.add_parser("list", help=f"list {kind} secrets (metadata only)")
        _common(p)
        _client(p)
        p.set_defaults(func=client_cmds.cmd_project_list, kind=kind)
        p = group.add_parser("delete", help=f"delete a {kind} secret")
        _common(p)
        _client(p)
        p.add_argument("id")
        p.set_defaults(func=client_cmds.cmd_project_delete, kind=kind)


def _key_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="encryption keys (operator token)", description="The vault's key-encryption keys.")
    k_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    p = k_sub.add_parser("status", help="list keys and how many values each protects")
    _common(p)
    _client(p)
    p.set_defaults(func=client_cmds.cmd_keys_status)
    p = k_sub.add_parser("rotate", help="add a key and re-wrap every data key online (shows progress)")
    _common(p)
    _client(p)
    p.set_defaults(func=client_cmds.cmd_keys_rotate)
    p = k_sub.add_parser("retire", help="remove an old key once nothing uses it")
    _common(p)
    _client(p)
    p.add_argument("key_id")
    p.set_defaults(func=client_cmds.cmd_keys_retire)


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    values = {"server.data_dir": getattr(args, "data_dir", None), **overrides}
    return load_settings(config_file=getattr(args, "config", None), overrides=values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"error: setting {exc.key}: {exc.reason}", file=sys.stderr)
        print("fix the setting in the config file or its ROOMSVC_* environment variable, then run again", file=sys.stderr)
        return 2
    except Sealed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 3
    except RoomsvcError as exc:  # often the server's words, which may echo what a client sent
        # the error's name in brackets: the same word the HTTP and websocket APIs answer with
        print(f"error [{exc.name}]: {printable(exc.message)}", file=sys.stderr)
        hint = _HINTS.get(exc.name)
        if hint:
            print(hint, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


_HINTS = {
    "unauthenticated": "pass a valid token with --token or ROOMSVC_TOKEN (mint one with `roomsvc token`)",
    "permission_denied": "the token lacks a grant for this: mint one with the needed --api sections (or --operator)",
    "dependency_missing": "start the server with `roomsvc serve` or point --url / ROOMSVC_URL at it",
}

