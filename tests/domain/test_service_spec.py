"""Service spec validation: every error names the field path, and never quotes a value."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from roomsvc.domain.service_spec import SpecError, parse_service_spec

CANARY = "literal-CANARY-93e1"

GOOD: dict[str, Any] = {
    "kind": "Service",
    "metadata": {"name": "mailer"},
    "container": {
        "image": "127.0.0.1:5000/mailer:1",
        "command": "/bin/sh -c 'echo hi'",
        "environment": [
            {"name": "MODE", "value": CANARY},
            {"name": "GH", "secret": {"identity": "bot", "id": "gh"}},
            {"name": "ROOM_TOKEN", "token": {"identity": "mailer", "api": ["secrets"]}},
        ],
        "secrets": ["bag"],
        "pull_secret": "registry",
    },
}


def test_a_full_spec_parses() -> None:
    spec = parse_service_spec(GOOD)
    c = spec.container
    assert spec.name == "mailer" and c.command == ("/bin/sh", "-c", "echo hi") and c.secrets == ("bag",)
    assert [e.name for e in c.environment] == ["MODE", "GH", "ROOM_TOKEN"]
    assert c.environment[1].secret is not None and c.environment[1].secret.identity == "bot"
    token = c.environment[2].token
    assert token is not None and token.role == "agent" and dict(token.api) == {"secrets": {}}
    assert CANARY not in repr(spec)


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "value", "named"), [
    (["kind"], "Deployment", "kind: must be 'Service'"),
    (["metadata", "name"], KeyError, "metadata.name: required"),
    (["metadata", "name"], "Bad Name", "metadata.name:"),
    (["container", "environment", 1, "secret", "id"], KeyError, "container.environment[1].secret.id: required"),
    (["container", "environment", 1, "secret", "identity"], "bad identity!", "container.environment[1].secret.identity:"),
    (["container", "environment", 0, "secret"], {"identity": "a", "id": "b"}, "container.environment[0]: needs exactly one"),
    (["container", "environment", 2, "token", "role"], "root", "container.environment[2].token.role:"),
    (["container", "environment", 2, "name"], "1BAD", "container.environment[2].name:"),
    (["container", "environment", 2, "name"], "MODE", "container.environment[2].name: 'MODE' appears twice"),
    (["container", "secrets", 0], 7, "container.secrets[0]: must be a non-empty string"),
    (["container", "image"], "bad image;rm", "container.image:"),
    (["container", "surprise"], 1, "container.surprise: unknown field"),
    (["container", "environment", 0, "value"], ["list"], "container.environment[0].value: must be a string"),
])
def test_errors_name_the_field_path(path: list[Any], value: Any, named: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_service_spec(_with(path, value))
    assert named in info.value.message
    assert CANARY not in info.value.message


def test_not_a_mapping_and_pull_secret_without_image() -> None:
    with pytest.raises(SpecError, match="spec: must be a mapping"):
        parse_service_spec(["kind", "Service"])
    doc = _with(["container", "image"], KeyError)
    with pytest.raises(SpecError, match="container.pull_secret: needs container.image"):
        parse_service_spec(doc)
