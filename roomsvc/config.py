"""Settings: loaded once at start-up into frozen values, validated with the key path.

Sources, later ones winning: the defaults below, a TOML file (``--config``, or
``config/roomsvc.toml`` when present), environment variables ``ROOMSVC_<SECTION>_<KEY>``
(e.g. ``ROOMSVC_WEBSOCKET_HEARTBEAT=5``), then command-line overrides. Secret-bearing
settings (master key, signing key) come only from files or the environment and are
held as :class:`~roomsvc.ids.SecretStr`, so they never print.

Nothing else in roomsvc reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from roomsvc.errors import ConfigError
from roomsvc.ids import SecretStr


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8780
    #: base of every link roomsvc hands out; empty = http://host:port
    public_url: str = ""
    data_dir: str = "./data"
    #: development and tests only: http links, non-Secure cookies, loopback upstreams
    allow_insecure_loopback: bool = False
    shutdown_timeout: float = 10.0
    log_level: str = "info"
    log_json: bool = False
    access_log: bool = True
    #: largest HTTP request body read (413 above it); a secret value of max_value_size must fit
    max_body_size: int = 262144
    #: where /v1/admin/backup may write; empty = <data_dir>/backups
    backup_dir: str = ""


@dataclass(frozen=True)
class TokenSettings:
    require_exp: bool = True
    max_ttl: int = 86400
    leeway: int = 60
    default_ttl: int = 3600


@dataclass(frozen=True)
class KeySettings:
    #: where the signing keyring lives; empty = <data_dir>/signing.key
    signing_key_file: str = ""
    #: where the master key lives; empty = <data_dir>/master.key
    master_key_file: str = ""
    #: generate keys into an empty data directory (development mode)
    generate_if_missing: bool = True
    #: read from ROOMSVC_MASTER_KEY / ROOMSVC_SIGNING_KEY only (never from the TOML file)
    master_key: SecretStr = field(default_factory=lambda: SecretStr(""))
    signing_key: SecretStr = field(default_factory=lambda: SecretStr(""))


@dataclass(frozen=True)
class RoomSettings:
    auto_create: bool = True
    max_participants: int = 500
    #: a participant's attributes, all updates merged: how many, and their size as JSON
    max_attributes: int = 64
    max_attributes_size: int = 16384


@dataclass(frozen=True)
class WebsocketSettings:
    max_message_size: int = 131072
    heartbeat: float = 20.0
    auth_timeout: float = 10.0
    outbound_queue: int = 256
    send_timeout: float = 10.0
    max_connections_per_identity: int = 16
    max_concurrent_requests: int = 32
    max_bad_messages: int = 5
    max_call_timeout: float = 300.0
    max_unauthenticated: int = 256
    # -- issue 12 (performance) --
    #: seconds over which a native connection's presence announcements are coalesced
    #: into one ``participants.changed`` frame (the first goes out at once); 0 = off
    presence_coalesce: float = 0.05


@dataclass(frozen=True)
class SecretSettings:
    max_value_size: int = 65536
    max_versions: int = 10
    audit_batch_max: int = 256
    #: audit lines older than this many seconds may be pruned; 0 = keep forever
    audit_retention: float = 0.0
    #: with a retention set, the server prunes this often (seconds; 0 = only `roomsvc audit prune`)
    audit_prune_interval: float = 3600.0
    #: lines deleted per write transaction while pruning (other writes go in between)
    audit_prune_batch: int = 5000


@dataclass(frozen=True)
class StorageSettings:
    engine: str = "sqlite"
    #: empty = <data_dir>/roomsvc.db
    sqlite_path: str = ""
    busy_timeout_ms: int = 5000


@dataclass(frozen=True)
class OAuthSettings:
    #: URL prefixes (``*`` = prefix wildcard) an inline client config's authorization
    #: and token endpoints must match; empty = inline configs are refused
    inline_endpoints: tuple[str, ...] = ()
    #: refresh a stored access token when it expires within this many seconds
    refresh_margin: float = 60.0
    #: lifetime assumed for an access token whose response has no expires_in (and no JWT exp)
    assumed_token_lifetime: float = 3600.0
    #: how long the state of an opened start link stays valid
    state_ttl: float = 600.0
    #: default timeout of request_oauth_token / request_secret
    flow_timeout: float = 300.0
    #: longest timeout a request may ask for
    max_flow_timeout: float = 3600.0
    #: shortest timeout a request may ask for (shorter ones are refused)
    min_flow_timeout: float = 10.0
    #: how often flows past their deadline are expired and deleted (seconds)
    flow_purge_interval: float = 60.0
    #: a flow's row is deleted this long after its deadline
    flow_purge_grace: float = 60.0
    #: consent requests one identity may have waiting at once
    max_pending_per_identity: int = 8
    #: outbound calls to providers: connect and total timeouts, largest response accepted
    http_connect_timeout: float = 5.0
    http_timeout: float = 15.0
    max_response_size: int = 65536
    #: how long discovered provider metadata is cached
    discovery_ttl: float = 3600.0
    #: retries of a refresh after a transient provider error, and the first backoff delay
    refresh_retries: int = 3
    refresh_backoff: float = 0.5
    #: where connector definitions (*.toml) are read from at start-up
    connectors_dir: str = "config/connectors"


@dataclass(frozen=True)
class LimitSettings:
    """Per-identity rate limits (token buckets per room and identity, per node): ``*_rate``
    operations a second on average, ``*_burst`` at once; a rate of 0 turns a class off."""

    #: room-secret reads, writes, lists, deletes, exists, header resolution, offline tokens
    secret_ops_rate: float = 20.0
    secret_ops_burst: int = 100
    #: new OAuth consent flows and secret requests (each one prompts another participant)
    flows_rate: float = 0.5
    flows_burst: int = 20
    #: messages sent, broadcast, or calls made to other participants
    messages_rate: float = 100.0
    messages_burst: int = 500
    #: buckets kept per class; idle (full) ones are dropped first, then the least recently used
    max_buckets: int = 100000


@dataclass(frozen=True)
class ProxySettings:
    """The toolkit sidecar proxy (``roomsvc toolkit proxy``)."""

    #: outbound connect timeout and total time allowed for one upstream exchange
    connect_timeout: float = 10.0
    timeout: float = 300.0
    #: resolved headers are re-fetched after this long, to pick up rotated secrets
    cache_ttl: float = 30.0
    #: ... and this long before an OAuth credential they use expires
    refresh_margin: float = 30.0


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    keys: KeySettings = field(default_factory=KeySettings)
    rooms: RoomSettings = field(default_factory=RoomSettings)
    websocket: WebsocketSettings = field(default_factory=WebsocketSettings)
    secrets: SecretSettings = field(default_factory=SecretSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)

    # -- derived values -------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def backup_dir(self) -> Path:
        return Path(self.server.backup_dir) if self.server.backup_dir else self.data_dir / "backups"

    @property
    def sqlite_path(self) -> Path:
        return Path(self.storage.sqlite_path) if self.storage.sqlite_path else self.data_dir / "roomsvc.db"

    @property
    def signing_key_path(self) -> Path:
        return Path(self.keys.signing_key_file) if self.keys.signing_key_file else self.data_dir / "signing.key"

    @property
    def master_key_path(self) -> Path:
        return Path(self.keys.master_key_file) if self.keys.master_key_file else self.data_dir / "master.key"

    def public_url(self, bound_port: int | None = None) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        return f"http://{_url_host(self.server.host)}:{bound_port or self.server.port}"


#: keys that may only come from the environment (or a file the environment names)
_ENV_ONLY = {("keys", "master_key"): "ROOMSVC_MASTER_KEY", ("keys", "signing_key"): "ROOMSVC_SIGNING_KEY"}
_CHOICES = {
    ("server", "log_level"): {"debug", "info", "warning", "error"},
    ("storage", "engine"): {"sqlite"},
}


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build :class:`Settings` from defaults, file, environment and overrides.

    Args:
        config_file: a TOML file; ``None`` reads ``ROOMSVC_CONFIG`` or, failing that,
            ``config/roomsvc.toml`` when it exists.
        environ: the environment (``os.environ`` when ``None``).
        overrides: dotted keys (``"server.port"``) set last, e.g. from the command line.

    Raises:
        ConfigError: naming the key path and the reason.
    """
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, dict[str, Any]] = {}
    path = config_file or env.get("ROOMSVC_CONFIG")
    if path is None and Path("config/roomsvc.toml").is_file():
        path = "config/roomsvc.toml"
    if path:
        raw = _read_toml(Path(path))
    sections: dict[str, Any] = {}
    for sf in fields(Settings):
        cls = type(getattr(Settings(), sf.name))
        from_file = raw.pop(sf.name, {})
        if not isinstance(from_file, dict):
            raise ConfigError(sf.name, "must be a table")
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"{sf.name}.{f.name}"
            default = getattr(cls(), f.name)
            if (sf.name, f.name) in _ENV_ONLY:
                if f.name in from_file:
                    raise ConfigError(key, f"never put a key in the config file; set {_ENV_ONLY[(sf.name, f.name)]} or {sf.name}.{f.name}_file")
                values[f.name] = SecretStr(env.get(_ENV_ONLY[(sf.name, f.name)], ""))
                continue
            value: Any = from_file.pop(f.name, default)
            env_name = f"ROOMSVC_{sf.name.upper()}_{f.name.upper()}"
            if env_name in env:
                value = env[env_name]
            if overrides and key in overrides and overrides[key] is not None:
                value = overrides[key]
            values[f.name] = _coerce(key, value, default)
            if (sf.name, f.name) in _CHOICES and values[f.name] not in _CHOICES[(sf.name, f.name)]:
                raise ConfigError(key, f"must be one of {sorted(_CHOICES[(sf.name, f.name)])}")
        if from_file:
            raise ConfigError(f"{sf.name}.{sorted(from_file)[0]}", "unknown setting")
        sections[sf.name] = cls(**values)
    if raw:
        raise ConfigError(sorted(raw)[0], "unknown section")
    # the *_FILE variants of the env-only keys are just the file settings
    if env.get("ROOMSVC_MASTER_KEY_FILE"):
        sections["keys"] = dataclasses.replace(sections["keys"], master_key_file=env["ROOMSVC_MASTER_KEY_FILE"])
    if env.get("ROOMSVC_SIGNING_KEY_FILE"):
        sections["keys"] = dataclasses.replace(sections["keys"], signing_key_file=env["ROOMSVC_SIGNING_KEY_FILE"])
    settings = Settings(**sections)
    _validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config", f"file {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path}: {exc}") from None


def _coerce(key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is tuple:
        # a TOML list of strings, or a comma-separated string from the environment
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(key, f"expected a list of strings, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())
    out: int | float
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
                return True
            if isinstance(value, str) and value.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            out = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        else:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected {kind.__name__}, got {value!r}") from None
    if out < 0:
        raise ConfigError(key, "must not be negative")
    return out


def _validate(s: Settings) -> None:
    if not 0 <= s.server.port <= 65535:
        raise ConfigError("server.port", "must be between 0 and 65535")
    if s.websocket.max_message_size < 1024:
        raise ConfigError("websocket.max_message_size", "must be at least 1024 (0 would turn the limit off)")
    # values travel base64-encoded (4 characters per 3 bytes) inside a JSON message
    if s.websocket.max_message_size < -(-s.secrets.max_value_size // 3) * 4 + 1024:
        raise ConfigError(
            "websocket.max_message_size",
            "must exceed secrets.max_value_size in base64 (4/3 of it) by at least 1024 so a maximal secret fits in a message",
        )
    # aiohttp reads 0 as "no limit": the limit may never be off
    if s.server.max_body_size < -(-s.secrets.max_value_size // 3) * 4 + 1024:
        raise ConfigError(
            "server.max_body_size",
            "must exceed secrets.max_value_size in base64 (4/3 of it) by at least 1024 so a maximal secret fits in a body",
        )
    if s.rooms.max_attributes_size < 256:
        raise ConfigError("rooms.max_attributes_size", "must be at least 256 (a MeshAgent participant's name must fit)")
    for key, value in (
        ("rooms.max_attributes", s.rooms.max_attributes),
        ("websocket.outbound_queue", s.websocket.outbound_queue),
        ("websocket.max_concurrent_requests", s.websocket.max_concurrent_requests),
        ("websocket.max_connections_per_identity", s.websocket.max_connections_per_identity),
        ("websocket.max_unauthenticated", s.websocket.max_unauthenticated),
        ("secrets.max_versions", s.secrets.max_versions),
        ("secrets.max_value_size", s.secrets.max_value_size),
        ("tokens.max_ttl", s.tokens.max_ttl),
    ):
        if value < 1:
            raise ConfigError(key, "must be at least 1")
    if s.websocket.presence_coalesce < 0:  # issue 12
        raise ConfigError("websocket.presence_coalesce", "must be 0 (off) or above")
    for key, amount in (("oauth.state_ttl", s.oauth.state_ttl), ("oauth.flow_timeout", s.oauth.flow_timeout),
                        ("oauth.http_timeout", s.oauth.http_timeout), ("oauth.max_response_size", s.oauth.max_response_size)):
        if amount <= 0:
            raise ConfigError(key, "must be above 0")
    if s.oauth.flow_timeout > s.oauth.max_flow_timeout:
        raise ConfigError("oauth.flow_timeout", "must not exceed oauth.max_flow_timeout")
    if not s.oauth.min_flow_timeout <= s.oauth.flow_timeout:
        raise ConfigError("oauth.min_flow_timeout", "must not exceed oauth.flow_timeout")
    if s.oauth.flow_purge_interval <= 0:
        raise ConfigError("oauth.flow_purge_interval", "must be above 0")
    for kind in ("secret_ops", "flows", "messages"):
        if getattr(s.limits, f"{kind}_rate") > 0 and getattr(s.limits, f"{kind}_burst") < 1:
            raise ConfigError(f"limits.{kind}_burst", "must be at least 1 (set the rate to 0 to turn the limit off)")
    if s.limits.max_buckets < 1:
        raise ConfigError("limits.max_buckets", "must be at least 1")
    if s.secrets.audit_prune_batch < 1:
        raise ConfigError("secrets.audit_prune_batch", "must be at least 1")
    for entry in s.oauth.inline_endpoints:
        parts = urlsplit(entry.rstrip("*"))
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError("oauth.inline_endpoints", f"{entry[:80]!r} is not an absolute http(s) URL (prefix)")
    if s.server.public_url:
        parts = urlsplit(s.server.public_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError("server.public_url", "must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ConfigError("server.public_url", "must not carry a query or fragment")
        if parts.scheme != "https" and not s.server.allow_insecure_loopback:
            raise ConfigError("server.public_url", "must be https (set server.allow_insecure_loopback for development)")


def check_serving(s: Settings) -> None:
    """Checks that matter only when the server starts (not for ``roomsvc token`` etc.).

    Raises:
        ConfigError: production defaults are strict: links must be https.
    """
    if not s.server.public_url and not s.server.allow_insecure_loopback:
        raise ConfigError(
            "server.public_url",
            "not set: links roomsvc hands out must be https; set server.public_url "
            "(ROOMSVC_SERVER_PUBLIC_URL) or, for development, server.allow_insecure_loopback = true "
            "(ROOMSVC_SERVER_ALLOW_INSECURE_LOOPBACK=1)",
        )


def _url_host(host: str) -> str:
    if host in {"", "0.0.0.0"}:
        return "127.0.0.1"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def environment() -> Mapping[str, str]:
    """The process environment, for start-up loaders that name variables of their own
    (a connector's ``client_secret_env``). The one place besides :func:`load_settings`
    that touches ``os.environ``."""
    return dict(os.environ)


def redacted(settings: Settings) -> dict[str, dict[str, Any]]:
    """The settings as plain data with secrets masked, for start-up logs."""
    out: dict[str, dict[str, Any]] = {}
    for sf in fields(Settings):
        section = getattr(settings, sf.name)
        out[sf.name] = {f.name: (repr(v) if isinstance(v := getattr(section, f.name), SecretStr) else v) for f in fields(section)}
    return out


def client_defaults(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Where CLI client commands find the server and their token (``ROOMSVC_URL``, ``ROOMSVC_TOKEN``)."""
    env = os.environ if environ is None else environ
    return {"url": env.get("ROOMSVC_URL", "http://127.0.0.1:8780"), "token": env.get("ROOMSVC_TOKEN") or None}
