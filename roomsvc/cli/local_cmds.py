"""Commands that work on the local data directory: serve, token, apikey."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from roomsvc.app import key_sources
from roomsvc.cli.client_cmds import cmd_token_revoke
from roomsvc.cli.options import Parents, command, settings_from, usage
from roomsvc.config import Settings
from roomsvc.crypto.keys import api_key_for, read_signing_keyring
from roomsvc.crypto.tokens import SigningKeyring, mint, new_token_id
from roomsvc.domain.principal import build_claims
from roomsvc.errors import ConfigError, InvalidRequest
from roomsvc.logs import setup_logging


def register(sub: Any, parents: Parents) -> None:
    p = command(sub, "serve", cmd_serve, parents=[parents.local], help="start the server",
                description="Start the server (SQLite in the data directory by default).")
    p.add_argument("--host", help="address to bind (server.host)")
    p.add_argument("--port", type=int, help="port to bind, 0 = any free port (server.port)")

    p = command(sub, "token", cmd_token, parents=[parents.local], help="print a signed participant token",
                description="Mint a participant token with the server's signing key.")
    p.add_argument("--room", help="room grant")
    p.add_argument("--identity", help="participant identity (the token's name)")
    p.add_argument("--role", choices=("user", "agent", "tool"), default="user")
    p.add_argument("--api", action="append", default=[], metavar="SECTION", help="api grant section, e.g. secrets, admin (repeatable)")
    p.add_argument("--ttl", type=int, help="lifetime in seconds (default tokens.default_ttl)")
    p.add_argument("--operator", action="store_true", help="project-level token: no room, admin API (for /v1/admin/...)")
    p.add_argument("--use-only", action="store_true", help=(
        "secrets grant {\"use_only\": true}: resolve headers for a named destination, never read values "
        "(for `roomsvc toolkit proxy`; implies --api secrets)"))
    # LLM proxy (issue 14): narrow the llm grant (docs/llm.md)
    p.add_argument("--llm-provider", action="append", default=[], metavar="NAME", help=(
        "llm grant: allow this provider only (openai, anthropic; repeatable; implies --api llm)"))
    p.add_argument("--llm-model", action="append", default=[], metavar="PATTERN", help=(
        "llm grant: allow this model, or models starting with a prefix ending in '*' (repeatable; implies --api llm)"))
    token_sub = p.add_subparsers(dest="token_command", metavar="COMMAND", required=False)
    # revoking talks to the server: its handler is with the other HTTP commands
    r = command(token_sub, "revoke", cmd_token_revoke, parents=[parents.client],
                help="revoke tokens on the running server (operator token)", description=(
        "Revoke one token by its jti, or every token of an identity issued before now (optionally in one room). "
        "Requests with those tokens are refused and open sockets on them close with 4001. Tokens minted "
        "afterwards work (a token minted in the same second as the revocation is revoked too)."))
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti", help="the token id (printed by `roomsvc token` on stderr)")
    which.add_argument("--identity", help="revoke the identity's tokens issued before now")
    r.add_argument("--room", help="with --identity: only its tokens for this room")

    command(sub, "apikey", cmd_apikey, parents=[parents.local], help="print the signing key as a MeshAgent API key", description=(
        "Print the signing key as ma-<kid>-<project>-<secret>, so MeshAgent's ParticipantToken.to_jwt(api_key=...) "
        "mints tokens this server accepts. Treat it like a password."))


def cmd_serve(args: argparse.Namespace) -> int:
    from roomsvc.cli.serve import serve

    settings = settings_from(args, **{"server.host": args.host, "server.port": args.port})
    setup_logging(level=settings.server.log_level, json_lines=settings.server.log_json)
    return asyncio.run(serve(settings))


def _keyring(args: argparse.Namespace) -> tuple[SigningKeyring, Settings]:
    settings = settings_from(args)
    keyring = read_signing_keyring(key_sources(settings))
    if keyring is None:
        raise ConfigError(
            "keys.signing_key_file",
            f"no signing key at {str(settings.signing_key_path)!r}; start `roomsvc serve` once to create one "
            "(development mode), or set ROOMSVC_SIGNING_KEY / --data-dir",
        )
    return keyring, settings


def cmd_token(args: argparse.Namespace) -> int:
    keyring, settings = _keyring(args)
    with usage():
        claims, token_id = _claims(args, keyring, settings)
    print(mint(keyring, claims))
    print(f"(token id {token_id}: `roomsvc token revoke --jti {token_id}` revokes it)", file=sys.stderr)
    return 0


def _claims(args: argparse.Namespace, keyring: SigningKeyring, settings: Settings) -> tuple[dict[str, Any], str]:
    """The token's claims from the command line. Raises: InvalidRequest."""
    api: dict[str, dict[str, Any]]
    if args.operator:
        if args.room:
            raise InvalidRequest("an operator token has no room; drop --room or --operator")
        if args.use_only:
            raise InvalidRequest("--use-only is a room token's secrets grant; an operator token has none")
        if args.llm_provider or args.llm_model:
            raise InvalidRequest("--llm-provider and --llm-model narrow a room token's llm grant; an operator token has none")
        identity, room, api = args.identity or "operator", None, {"admin": {}}
    else:
        if not args.room or not args.identity:
            raise InvalidRequest("give --room and --identity (or --operator for a project-level token)")
        identity, room = args.identity, args.room
        api = {section: {} for section in args.api}
        if args.use_only:
            api["secrets"] = {"use_only": True}
        if args.llm_provider or args.llm_model:
            api["llm"] = {**({"providers": args.llm_provider} if args.llm_provider else {}),
                          **({"models": args.llm_model} if args.llm_model else {})}
    ttl = args.ttl if args.ttl is not None else settings.tokens.default_ttl
    if ttl <= 0 or ttl > settings.tokens.max_ttl:
        raise InvalidRequest(f"--ttl must be between 1 and tokens.max_ttl ({settings.tokens.max_ttl})")
    token_id = new_token_id()
    claims = build_claims(
        identity=identity, room=room, role=args.role, api=api, issued_at=int(time.time()), ttl=ttl,
        subject=keyring.project_id, token_id=token_id,
    )
    return claims, token_id


def cmd_apikey(args: argparse.Namespace) -> int:
    keyring, _ = _keyring(args)
    print(api_key_for(keyring))
    print(f"(this key signs participant tokens: keep it secret; project id {keyring.project_id}, "
          "the --project-id of the meshagent CLI)", file=sys.stderr)
    return 0
