"""Service specs in MeshAgent's shape, parsed from an already-loaded mapping (no YAML here).

A spec says what a room service runs and which credentials reach it::

    kind: Service
    metadata: {name: mailer}
    container:
      image: registry.example/mailer:1
      command: ["/bin/mailer", "--serve"]      # or one string, split like a shell would
      environment:
        - {name: MODE, value: production}                        # a literal
        - {name: GITHUB_TOKEN, secret: {identity: bot, id: gh}}  # a room secret of 'bot'
        - {name: ROOM_TOKEN, token: {identity: mailer, role: agent, api: [messaging]}}
      secrets: [mail-keys]        # project keys bags: each KEY=VALUE pair becomes a variable
      pull_secret: registry       # image pull secret: used to pull, never in the environment

Every error names the field path (``container.environment[2].secret.id: required``) and
never quotes a value: a spec may carry literals an operator considers sensitive.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from roomsvc.errors import InvalidRequest
from roomsvc.ids import parse_identity, parse_secret_id

ROLES = ("user", "agent", "tool")
MAX_ENVIRONMENT = 256
MAX_ARGS = 256
MAX_TEXT = 4096
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
#: an image reference: registry/path:tag or @digest, without spaces or shell characters
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}")


class SpecError(InvalidRequest):
    """A spec field is missing or wrong; ``path`` names it (``container.image``)."""

    name = "invalid_request"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class SecretRef:
    """``secret: {identity, id}``: room secret ``id`` owned by ``identity``."""

    identity: str
    id: str


@dataclass(frozen=True)
class TokenRef:
    """``token: {identity, role?, api?}``: a participant token roomsvc mints for the room."""

    identity: str
    role: str = "agent"
    #: API sections granted (``{"messaging": {}, "secrets": {}}``); none by default
    api: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvEntry:
    """One ``container.environment`` entry: exactly one of value, secret or token."""

    name: str
    value: str | None = None
    secret: SecretRef | None = None
    token: TokenRef | None = None

    def __repr__(self) -> str:  # a literal may be sensitive to its author: never printed
        source = "value" if self.value is not None else "secret" if self.secret else "token"
        return f"EnvEntry(name={self.name!r}, source={source})"


@dataclass(frozen=True)
class ContainerSpec:
    image: str | None
    command: tuple[str, ...]
    environment: tuple[EnvEntry, ...] = ()
    #: project keys secret ids
    secrets: tuple[str, ...] = ()
    pull_secret: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    container: ContainerSpec
    description: str = ""


def parse_service_spec(doc: object) -> ServiceSpec:
    """Validate a loaded spec document.

    Raises:
        SpecError: naming the first field that is missing or wrong.
    """
    top = _mapping(doc, "spec")
    _known(top, "", {"version", "kind", "metadata", "container", "ports", "agents", "room"})
    if top.get("kind") != "Service":
        raise SpecError("kind", "must be 'Service'")
    meta = _mapping(top.get("metadata"), "metadata")
    _known(meta, "metadata.", {"name", "description", "annotations", "repo", "icon"})
    name = _text(meta.get("name"), "metadata.name")
    if not SERVICE_NAME.fullmatch(name):
        raise SpecError("metadata.name", "use lower-case letters, digits, '.', '_' and '-' (at most 63), starting with a letter or digit")
    description = meta.get("description")
    if description is not None:
        _text(description, "metadata.description")
    return ServiceSpec(name=name, container=_container(top.get("container")), description=description or "")


def _container(doc: object) -> ContainerSpec:
    c = _mapping(doc, "container")
    _known(c, "container.", {"image", "command", "environment", "secrets", "pull_secret"})
    image = None
    if c.get("image") is not None:
        image = _text(c["image"], "container.image")
        if not IMAGE.fullmatch(image):
            raise SpecError("container.image", "must be an image reference (registry/name:tag), without spaces")
    command = _command(c.get("command"))
    if image is None and not command:
        raise SpecError("container.command", "required when there is no image")
    env = _list(c.get("environment", []), "container.environment", MAX_ENVIRONMENT)
    entries = tuple(_env_entry(item, f"container.environment[{i}]") for i, item in enumerate(env))
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.name in seen:
            raise SpecError(f"container.environment[{i}].name", f"{entry.name!r} appears twice")
        seen.add(entry.name)
    secrets = tuple(
        _id(item, f"container.secrets[{i}]") for i, item in enumerate(_list(c.get("secrets", []), "container.secrets", 64))
    )
    pull = c.get("pull_secret")
    pull_secret = _id(pull, "container.pull_secret") if pull is not None else None
    if pull_secret is not None and image is None:
        raise SpecError("container.pull_secret", "needs container.image (it is used to pull the image)")
    return ContainerSpec(image=image, command=command, environment=entries, secrets=secrets, pull_secret=pull_secret)


def _command(doc: object) -> tuple[str, ...]:
    if doc is None:
        return ()
    if isinstance(doc, str):
        try:
            args = shlex.split(doc)
        except ValueError as exc:
            raise SpecError("container.command", f"cannot be split into arguments ({exc})") from None
    else:
        args = [_text(a, f"container.command[{i}]") for i, a in enumerate(_list(doc, "container.command", MAX_ARGS))]
    if len(args) > MAX_ARGS:
        raise SpecError("container.command", f"at most {MAX_ARGS} arguments")
    return tuple(args)


def _env_entry(doc: object, path: str) -> EnvEntry:
    e = _mapping(doc, path)
    _known(e, path + ".", {"name", "value", "secret", "token"})
    name = _text(e.get("name"), path + ".name")
    if not ENV_NAME.fullmatch(name):
        raise SpecError(path + ".name", "must be an environment variable name (letters, digits, '_')")
    given = [key for key in ("value", "secret", "token") if e.get(key) is not None]
    if len(given) != 1:
        raise SpecError(path, "needs exactly one of 'value', 'secret' or 'token'")
    if given[0] == "value":
        value = e["value"]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise SpecError(path + ".value", "must be a string (or a number)")
        return EnvEntry(name=name, value=str(value))
    if given[0] == "secret":
        s = _mapping(e["secret"], path + ".secret")
        _known(s, path + ".secret.", {"identity", "id"})
        return EnvEntry(name=name, secret=SecretRef(_identity(s.get("identity"), path + ".secret.identity"),
                                                    _id(s.get("id"), path + ".secret.id")))
    t = _mapping(e["token"], path + ".token")
    _known(t, path + ".token.", {"identity", "role", "api"})
    role = t.get("role", "agent")
    if role not in ROLES:
        raise SpecError(path + ".token.role", f"must be one of {', '.join(ROLES)}")
    return EnvEntry(name=name, token=TokenRef(_identity(t.get("identity"), path + ".token.identity"), role,
                                              _api(t.get("api"), path + ".token.api")))


def _api(doc: object, path: str) -> dict[str, Any]:
    """A list of section names, or MeshAgent's mapping of section -> options."""
    if doc is None:
        return {}
    if isinstance(doc, list):
        return {_text(s, f"{path}[{i}]"): {} for i, s in enumerate(doc)}
    sections = _mapping(doc, path)
    out: dict[str, Any] = {}
    for key, value in sections.items():
        if not isinstance(key, str) or not key:
            raise SpecError(path, "section names must be strings")
        if value is not None and not isinstance(value, dict):
            raise SpecError(f"{path}.{key}", "must be a mapping of options (or empty)")
        out[key] = dict(value or {})
    return out


# -- field helpers ---------------------------------------------------------------------------


def _mapping(doc: object, path: str) -> Mapping[str, Any]:
    if doc is None:
        raise SpecError(path, "required")
    if not isinstance(doc, Mapping):
        raise SpecError(path, "must be a mapping")
    return doc


def _list(doc: object, path: str, limit: int) -> list[Any]:
    if not isinstance(doc, list):
        raise SpecError(path, "must be a list")
    if len(doc) > limit:
        raise SpecError(path, f"at most {limit} entries")
    return doc


def _known(doc: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
    for key in doc:
        if key not in allowed:
            shown = key if isinstance(key, str) and key.isprintable() and len(key) <= 64 else "?"
            raise SpecError(f"{prefix}{shown}", "unknown field")


def _text(value: object, path: str) -> str:
    if value is None:
        raise SpecError(path, "required")
    if not isinstance(value, str) or not value:
        raise SpecError(path, "must be a non-empty string")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise SpecError(path, f"must be at most {MAX_TEXT} characters, without NUL")
    return value


def _identity(value: object, path: str) -> str:
    _text(value, path)
    try:
        return parse_identity(value)
    except InvalidRequest as exc:
        raise SpecError(path, exc.message) from None


def _id(value: object, path: str) -> str:
    _text(value, path)
    try:
        return parse_secret_id(value)
    except InvalidRequest as exc:
        raise SpecError(path, exc.message) from None
