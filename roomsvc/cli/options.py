"""What the ``roomsvc`` commands share: the parent parsers of their common options, the
settings read from them, and usage errors.

Each command module registers its own subcommands with ``register(sub, parents)``, taking
the option groups it reads from :class:`Parents` (argparse ``parents=``): a command that
never reads settings does not take ``--config``/``--data-dir``, and one that talks to no
server does not take ``--url``/``--token``.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from roomsvc.config import Settings, client_defaults, load_settings
from roomsvc.errors import InvalidRequest

Command = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Parents:
    """Option groups to pass as ``parents=`` (each built once, without ``-h``)."""

    #: --config, --data-dir: commands that read settings (local commands, the proxy)
    local: argparse.ArgumentParser
    #: --url, --token: commands that talk to a running server
    client: argparse.ArgumentParser
    #: --room (required): commands that act in one room
    room: argparse.ArgumentParser
    #: --json: commands that print a table unless asked for JSON
    json: argparse.ArgumentParser


def parents() -> Parents:
    local = argparse.ArgumentParser(add_help=False)
    local.add_argument("--config", metavar="PATH", help="TOML settings file (default: ROOMSVC_CONFIG or config/roomsvc.toml)")
    local.add_argument("--data-dir", metavar="DIR", help="data directory (server.data_dir; default ./data)")

    client = argparse.ArgumentParser(add_help=False)
    defaults = client_defaults()
    client.add_argument("--url", default=defaults["url"], help="server base URL (ROOMSVC_URL; default %(default)s)")
    client.add_argument("--token", default=defaults["token"], help="participant token (ROOMSVC_TOKEN)")

    room = argparse.ArgumentParser(add_help=False)
    room.add_argument("--room", required=True)

    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")
    return Parents(local=local, client=client, room=room, json=as_json)


def command(sub: Any, name: str, func: Command, *, parents: Sequence[argparse.ArgumentParser] = (),
            **kwargs: Any) -> argparse.ArgumentParser:
    """Add subcommand ``name`` that runs ``func``; its usage errors name it (``roomsvc room secret set``)."""
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=list(parents), **kwargs)
    parser.set_defaults(func=func, command_prog=parser.prog)
    return parser


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    values = {"server.data_dir": getattr(args, "data_dir", None), **overrides}
    return load_settings(config_file=getattr(args, "config", None), overrides=values)


class UsageError(Exception):
    """The command line itself is wrong, found before anything was sent: exit status 2.

    Not a :class:`~roomsvc.errors.RoomsvcError`, so it can never be confused with an
    ``invalid_request`` the server answered (that one exits 1).
    """

    def __init__(self, error: InvalidRequest) -> None:
        super().__init__(error.message)
        self.error = error


@contextmanager
def usage() -> Iterator[None]:
    """Around a command's checks of its arguments: an :class:`InvalidRequest` raised inside
    (by the command or by a validator it calls) is a usage error."""
    try:
        yield
    except InvalidRequest as exc:
        raise UsageError(exc) from exc
