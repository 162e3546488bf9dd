"""MeshAgent's ``--header-secret HEADER:FORMAT``, parsed and rendered without a template engine.

``Authorization:Bearer {github}`` splits at the first colon into a header name and a
format. The format holds literal text and ``{key}`` placeholders (``{{`` and ``}}`` are
literal braces); each key names one of the caller's own secrets, and ``{owner/key}`` names
the secret ``key`` that ``owner`` delegated to the caller. Rendering is literal substitution: no attribute
or index access (``{a.b}``, ``{a[0]}``), no conversions or format specs (``{a!r}``,
``{a:>9}``) - unlike ``str.format``, which would allow ``{t.__class__...}``.

The header name must be an HTTP token and not a framing or hop-by-hop header. Rendered
values may not contain control characters: that is checked again at render time, because
a token from a provider is untrusted input too. Errors name the placeholder, never a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from roomsvc.errors import HeaderSpecError

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
#: ``{owner/key}``: the secret ``key`` that ``owner`` delegated to the caller (identity charset)
_DELEGATED_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+:-]{0,127}/[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
FORBIDDEN = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"}
MAX_VALUE = 8192


@dataclass(frozen=True)
class Placeholder:
    key: str

    @property
    def owner(self) -> str | None:
        """The identity named in ``{owner/key}``: a secret it delegated to the caller."""
        return self.key.rpartition("/")[0] or None

    @property
    def secret(self) -> str:
        return self.key.rpartition("/")[2]


@dataclass(frozen=True)
class HeaderSpec:
    name: str
    parts: tuple[str | Placeholder, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        seen: list[str] = []
        for part in self.parts:
            if isinstance(part, Placeholder) and part.key not in seen:
                seen.append(part.key)
        return tuple(seen)

    def render(self, values: dict[str, str]) -> str:
        """Substitute every placeholder.

        Raises:
            HeaderSpecError: a value is missing, has control characters, or the result is too long.
        """
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, Placeholder):
                if part.key not in values:
                    raise HeaderSpecError(f"no value for placeholder {{{part.key}}}")
                value = values[part.key]
                if _has_control(value):
                    raise HeaderSpecError(
                        f"the secret for placeholder {{{part.key}}} contains control characters (CR, LF, NUL, ...); "
                        "it cannot go into a header"
                    )
                out.append(value)
            else:
                out.append(part)
        rendered = "".join(out)
        if len(rendered) > MAX_VALUE:
            raise HeaderSpecError(f"header {self.name} would be longer than {MAX_VALUE} characters")
        return rendered


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def parse_header_spec(spec: object) -> HeaderSpec:
    """Parse ``HEADER:FORMAT``.

    Raises:
        HeaderSpecError: with what is wrong and how to write it.
    """
    if not isinstance(spec, str):
        raise HeaderSpecError("a header spec is a string HEADER:FORMAT, e.g. 'Authorization:Bearer {github}'")
    if _has_control(spec):
        raise HeaderSpecError("a header spec may not contain control characters (CR, LF, NUL, ...)")
    name, sep, fmt = spec.partition(":")
    name, fmt = name.strip(), fmt.strip()
    if not sep or not name or not fmt:
        raise HeaderSpecError("use HEADER:FORMAT, e.g. 'Authorization:Bearer {github}'")
    if not _TOKEN.fullmatch(name):
        raise HeaderSpecError(f"header name {name[:60]!r} is not a valid HTTP field name")
    lowered = name.lower()
    if lowered in FORBIDDEN or lowered.startswith("proxy-"):
        raise HeaderSpecError(f"header {name} cannot be injected (framing or hop-by-hop header)")
    parts = _parse_format(fmt)
    if not any(isinstance(p, Placeholder) for p in parts):
        raise HeaderSpecError("the format needs at least one {secret} placeholder; write literal braces as {{ and }}")
    return HeaderSpec(name=name, parts=tuple(parts))


def _parse_format(fmt: str) -> list[str | Placeholder]:
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "{":
            if fmt.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = fmt.find("}", i)
            if end < 0:
                raise HeaderSpecError("unclosed '{' in the format; write a literal brace as {{")
            key = fmt[i + 1 : end]
            if not (_KEY.fullmatch(key) or _DELEGATED_KEY.fullmatch(key)):
                raise HeaderSpecError(
                    f"placeholder {{{key[:40]}}} is not a plain secret key: only letters, digits, '_' and '-', "
                    "optionally after 'owner/' for a secret that owner delegated to you "
                    "(no attribute, index, conversion or format spec)"
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(key))
            i = end + 1
        elif c == "}":
            if fmt.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise HeaderSpecError("single '}' in the format; write a literal brace as }}")
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts
