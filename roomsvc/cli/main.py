"""``roomsvc``: serve, mint tokens, manage secrets and keys.

This module only assembles the command line: each command module registers its own
subcommands (``register``), taking the shared option groups of :mod:`roomsvc.cli.options`.
Commands that read settings take ``--config`` and ``--data-dir``; commands that talk to a
running server take ``--url`` (``ROOMSVC_URL``) and ``--token`` (``ROOMSVC_TOKEN``). Errors
print what went wrong and what to do; the exit status is 0 on success, 1 when the server or
the vault refused or failed, 2 for usage errors (argparse's own, and a command line a
command finds wrong before it sends anything) and bad settings, 3 when the vault is sealed,
130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from roomsvc import __version__
from roomsvc.cli import (
    client_cmds,
    llm_cmds,
    local_cmds,
    mcp_cmds,
    oauth_cmds,
    service_cmds,
    storage_cmds,
    toolkit_cmds,
)
from roomsvc.cli.options import UsageError, parents
from roomsvc.cli.terminal import printable
from roomsvc.errors import ConfigError, RoomsvcError, Sealed


def build_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="roomsvc", description="Room server for people and AI agents, with a credential vault.")
    root.add_argument("--version", action="version", version=f"roomsvc {__version__}")
    sub = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    shared = parents()
    local_cmds.register(sub, shared)  # serve, token (and token revoke), apikey
    rooms = client_cmds.register(sub, shared)  # room, room secret, secret, keys, audit, backup
    oauth_cmds.register(rooms, shared)  # room listen, room secret oauth|request (websocket)
    toolkit_cmds.register(sub, shared)  # toolkit headers|proxy
    service_cmds.register(sub, shared)  # service create|list|show|delete|start|stop|status|logs (issue 13)
    llm_cmds.register(sub, shared)  # llm usage
    mcp_cmds.register(sub, shared)  # mcp clients (issue 17)
    storage_cmds.register(sub, shared)  # migrate, export, import (issue 15)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"error: setting {exc.key}: {exc.reason}", file=sys.stderr)
        print("fix the setting in the config file or its ROOMSVC_* environment variable, then run again", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"error [{exc.error.name}]: {printable(exc.error.message)}", file=sys.stderr)
        print(f"nothing was sent; see `{args.command_prog} --help` for the options", file=sys.stderr)
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

