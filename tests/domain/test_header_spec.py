"""The header-secret spec: literal substitution only, hostile specs refused before any lookup."""

from __future__ import annotations

import pytest

from roomsvc.domain.header_spec import HeaderSpecError, Placeholder, parse_header_spec
from roomsvc.transport.errors import wire_error


@pytest.mark.parametrize(
    ("spec", "name", "keys", "rendered"),
    [
        ("Authorization:Bearer {github}", "Authorization", ("github",), "Bearer T1"),
        ("  X-Api-Key :  {github}  ", "X-Api-Key", ("github",), "T1"),
        ("X-Pair:{github}:{other}", "X-Pair", ("github", "other"), "T1:T2"),
        ("X-Json:{{\"k\": \"{github}\"}}", "X-Json", ("github",), '{"k": "T1"}'),
        ("X-Twice:{github}{github}", "X-Twice", ("github",), "T1T1"),
        ("X-Under:{my_key-2}", "X-Under", ("my_key-2",), "T3"),
    ],
)
def test_valid_specs_render_by_literal_substitution(spec: str, name: str, keys: tuple, rendered: str) -> None:
    parsed = parse_header_spec(spec)
    assert parsed.name == name and parsed.keys == keys
    assert parsed.render({"github": "T1", "other": "T2", "my_key-2": "T3"}) == rendered


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Authorization Bearer {x}", "HEADER:FORMAT"),
        (":Bearer {x}", "HEADER:FORMAT"),
        ("Authorization:", "HEADER:FORMAT"),
        ("Authorization:Bearer token", "at least one {secret} placeholder"),
        ("Authorization:Bearer {x}\r\nX-Evil: 1", "control characters"),
        ("Authorization:Bearer {x}\n", "control characters"),
        ("Authorization:Bearer \x00{x}", "control characters"),
        ("Host:{x}", "cannot be injected"),
        ("content-length:{x}", "cannot be injected"),
        ("Transfer-Encoding:{x}", "cannot be injected"),
        ("Connection:{x}", "cannot be injected"),
        ("Upgrade:{x}", "cannot be injected"),
        ("Proxy-Authorization:{x}", "cannot be injected"),
        ("Bad Name:{x}", "not a valid HTTP field name"),
        ("X(y):{x}", "not a valid HTTP field name"),
        ("X:{x.__class__}", "not a plain secret key"),
        ("X:{x[0]}", "not a plain secret key"),
        ("X:{x!r}", "not a plain secret key"),
        ("X:{x:>10}", "not a plain secret key"),
        ("X:{}", "not a plain secret key"),
        ("X:{0}", None),  # a digit key is a plain key (a secret may be called "0")
        ("X:{x", "unclosed"),
        ("X:x}", "single '}'"),
        (42, "is a string"),
    ],
)
def test_hostile_specs_are_refused_with_a_clear_error(spec, message) -> None:
    if message is None:
        assert parse_header_spec(spec).parts == (Placeholder("0"),)
        return
    with pytest.raises(HeaderSpecError) as info:
        parse_header_spec(spec)
    assert message in info.value.message
    assert wire_error(info.value).code == 1002


@pytest.mark.parametrize("bad", ["tok\r\nSet-Cookie: x=1", "tok\n", "a\x00b", "\x7f", "tab\there"])
def test_a_value_with_control_characters_is_refused_at_render_time_naming_only_the_placeholder(bad: str) -> None:
    spec = parse_header_spec("Authorization:Bearer {github}")
    with pytest.raises(HeaderSpecError) as info:
        spec.render({"github": bad})
    assert "{github}" in info.value.message
    assert bad not in info.value.message and "Set-Cookie" not in info.value.message


def test_overlong_values_are_refused() -> None:
    with pytest.raises(HeaderSpecError):
        parse_header_spec("X:{a}").render({"a": "x" * 9000})
