"""Connector files: OAuth provider definitions in ``<oauth.connectors_dir>/*.toml``.

Read once at start-up, next to :mod:`roomsvc.config`; a bad file stops start-up with
``ConfigError("connectors/<file>: <key>", reason)``. Files not ending in ``.toml`` (for
example ``example-github.toml.disabled``) are skipped. See
``config/connectors/example-github.toml.disabled`` and docs/oauth.md for the keys.

The client secret comes from exactly one of ``client_secret_env`` (an environment
variable), ``client_secret_file`` (a file, trailing newline dropped),
``client_secret_project`` (``"<project keys secret id>:<KEY>"``, read from the vault
when needed) or, only with ``client_secret_inline_ok = true``, ``client_secret``.
No secret = a public client (PKCE only).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping

from roomsvc.domain.oauth.connectors import (
    AUTH_METHODS,
    DEFAULT_HEADER_FORMAT,
    ConnectorSpec,
    SecretSource,
    check_endpoint,
    parse_connector_name,
    parse_scopes,
)
from roomsvc.errors import ConfigError, InvalidRequest

_KEYS = {
    "name", "issuer", "authorization_endpoint", "token_endpoint", "revocation_endpoint", "userinfo_endpoint",
    "client_id", "client_secret", "client_secret_env", "client_secret_file", "client_secret_project",
    "client_secret_inline_ok", "token_endpoint_auth_method", "scopes", "pkce", "extra_authorize_params",
    "allowed_hosts", "header_format", "iss_parameter",
}


def load_connectors(directory: str | Path, *, environ: Mapping[str, str], insecure_ok: bool) -> list[ConnectorSpec]:
    """Every ``*.toml`` file of ``directory`` as a connector (none if it does not exist).

    Raises:
        ConfigError: naming the file and key.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    specs: dict[str, ConnectorSpec] = {}
    for path in sorted(root.glob("*.toml")):
        spec = _load_one(path, environ, insecure_ok)
        if spec.name in specs:
            raise ConfigError(f"connectors/{path.name}: name", f"connector {spec.name!r} is defined twice")
        specs[spec.name] = spec
    return list(specs.values())


def _load_one(path: Path, environ: Mapping[str, str], insecure_ok: bool) -> ConnectorSpec:
    where = f"connectors/{path.name}"
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(where, f"cannot read: {exc}") from None
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}", "unknown key")

    def key(name: str) -> str:
        return f"{where}: {name}"

    try:
        name = parse_connector_name(raw.get("name", path.stem))
    except InvalidRequest as exc:
        raise ConfigError(key("name"), exc.message) from None
    client_id = raw.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise ConfigError(key("client_id"), "required (a non-empty string)")
    urls = {}
    for field in ("issuer", "authorization_endpoint", "token_endpoint", "revocation_endpoint", "userinfo_endpoint"):
        value = raw.get(field, "")
        if value:
            try:
                urls[field] = check_endpoint(value, field, insecure_ok=insecure_ok)
            except InvalidRequest as exc:
                raise ConfigError(key(field), exc.message) from None
    if not urls.get("issuer") and not (urls.get("authorization_endpoint") and urls.get("token_endpoint")):
        raise ConfigError(key("issuer"), "give issuer (discovery) or both authorization_endpoint and token_endpoint")
    method = raw.get("token_endpoint_auth_method", "")
    if method and method not in AUTH_METHODS:
        raise ConfigError(key("token_endpoint_auth_method"), f"must be one of {', '.join(AUTH_METHODS)}")
    try:
        scopes = parse_scopes(raw.get("scopes", []))
    except InvalidRequest as exc:
        raise ConfigError(key("scopes"), exc.message) from None
    return ConnectorSpec(
        name=name,
        client_id=client_id,
        issuer=urls.get("issuer", ""),
        authorization_endpoint=urls.get("authorization_endpoint", ""),
        token_endpoint=urls.get("token_endpoint", ""),
        revocation_endpoint=urls.get("revocation_endpoint", ""),
        userinfo_endpoint=urls.get("userinfo_endpoint", ""),
        token_endpoint_auth_method=method,
        client_secret=_secret_source(raw, environ, key, path.parent),
        scopes=scopes,
        pkce=_bool(raw, "pkce", True, key),
        extra_authorize_params=_str_map(raw.get("extra_authorize_params", {}), key("extra_authorize_params")),
        allowed_hosts=_str_list(raw.get("allowed_hosts", []), key("allowed_hosts")),
        header_format=_header_format(raw.get("header_format", DEFAULT_HEADER_FORMAT), key("header_format")),
        iss_parameter=_bool(raw, "iss_parameter", False, key),
    )


def _secret_source(raw: Mapping[str, Any], environ: Mapping[str, str], key: Any, base: Path) -> SecretSource:
    given = [k for k in ("client_secret", "client_secret_env", "client_secret_file", "client_secret_project") if raw.get(k)]
    if len(given) > 1:
        raise ConfigError(key(given[1]), f"give one client secret source, not {' and '.join(given)}")
    if not given:
        return SecretSource()
    source, value = given[0], raw[given[0]]
    if not isinstance(value, str):
        raise ConfigError(key(source), "must be a string")
    if source == "client_secret":
        if raw.get("client_secret_inline_ok") is not True:
            raise ConfigError(
                key("client_secret"),
                "an inline client secret needs client_secret_inline_ok = true; prefer client_secret_env, "
                "client_secret_file or client_secret_project",
            )
        return SecretSource("value", "inline", value)
    if source == "client_secret_env":
        secret = environ.get(value, "")
        if not secret:
            raise ConfigError(key("client_secret_env"), f"environment variable {value} is not set")
        return SecretSource("value", f"env:{value}", secret)
    if source == "client_secret_file":
        path = Path(value) if Path(value).is_absolute() else base / value
        try:
            secret = path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(key("client_secret_file"), f"cannot read {str(path)!r}: {exc.strerror}") from None
        if not secret:
            raise ConfigError(key("client_secret_file"), f"{str(path)!r} is empty")
        return SecretSource("value", f"file:{path}", secret)
    secret_id, sep, name = value.partition(":")
    if not sep or not secret_id or not name:
        raise ConfigError(key("client_secret_project"), "must be '<project keys secret id>:<KEY>'")
    return SecretSource("project", value)


def _bool(raw: Mapping[str, Any], name: str, default: bool, key: Any) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(key(name), "must be true or false")
    return value


def _str_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(where, "must be a table of strings")
    return dict(value)


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(where, "must be a list of strings")
    return tuple(value)


def _header_format(value: object, where: str) -> str:
    if not isinstance(value, str) or "{token}" not in value or not value.isprintable():
        raise ConfigError(where, "must be printable text containing {token}, e.g. 'Bearer {token}'")
    return value
