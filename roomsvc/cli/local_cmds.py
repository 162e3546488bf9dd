"""Commands that work on the local data directory: serve, token, apikey."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from roomsvc.app import key_sources
from roomsvc.config import Settings
from roomsvc.crypto.keys import api_key_for, read_signing_keyring
from roomsvc.crypto.tokens import SigningKeyring, mint, new_token_id
from roomsvc.domain.principal import build_claims
from roomsvc.errors import ConfigError, InvalidRequest
from roomsvc.logs import setup_logging


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    from roomsvc.cli.main import settings_from

    return settings_from(args, **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from roomsvc.cli.serve import serve

    settings = _settings(args, **{"server.host": args.host, "server.port": args.port})
    setup_logging(level=settings.server.log_level, json_lines=settings.server.log_json)
    return asyncio.run(serve(settings))


def _keyring(args: argparse.Namespace) -> tuple[SigningKeyring, Settings]:
    settings = _settings(args)
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
    api: dict[str, dict[str, Any]]
    if args.operator:
        if args.room:
            raise InvalidRequest("an operator token has no room; drop --room or --operator")
        if args.use_only:
            raise InvalidRequest("--use-only is a room token's secrets grant; an operator token has none")
        identity, room, api = args.identity or "operator", None, {"admin": {}}
    else:
        if not args.room or not args.identity:
            raise InvalidRequest("give --room and --identity (or --operator for a project-level token)")
        identity, room = args.identity, args.room
        api = {section: {} for section in args.api}
        if args.use_only:
            api["secrets"] = {"use_only": True}
    ttl = args.ttl if args.ttl is not None else settings.tokens.default_ttl
    if ttl <= 0 or ttl > settings.tokens.max_ttl:
        raise InvalidRequest(f"--ttl must be between 1 and tokens.max_ttl ({settings.tokens.max_ttl})")
    token_id = new_token_id()
    claims = build_claims(
        identity=identity, room=room, role=args.role, api=api, issued_at=int(time.time()), ttl=ttl,
        subject=keyring.project_id, token_id=token_id,
    )
    print(mint(keyring, claims))
    print(f"(token id {token_id}: `roomsvc token revoke --jti {token_id}` revokes it)", file=sys.stderr)
    return 0


def cmd_apikey(args: argparse.Namespace) -> int:
    keyring, _ = _keyring(args)
    print(api_key_for(keyring))
    print(f"(this key signs participant tokens: keep it secret; project id {keyring.project_id}, "
          "the --project-id of the meshagent CLI)", file=sys.stderr)
    return 0


def dumps(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
