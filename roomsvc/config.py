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
    # -- PostgreSQL (issue 15: engine = "postgres") --
    #: libpq URL or key=value string WITHOUT a password, e.g. postgresql://roomsvc@db:5432/roomsvc
    postgres_dsn: str = ""
    #: from ROOMSVC_STORAGE_POSTGRES_PASSWORD, else PGPASSWORD, only (never the TOML file or the DSN)
    postgres_password: SecretStr = field(default_factory=lambda: SecretStr(""))
    #: reader connections per node (writes use one more connection, the refresh lock its own pool)
    postgres_pool_size: int = 5
    #: seconds to connect, and for one statement, before the database counts as unavailable
    postgres_connect_timeout: float = 5.0
    postgres_command_timeout: float = 30.0
    #: seconds between looks for keys another node added (a rotation there); 0 = never
    postgres_key_reload_interval: float = 5.0


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


# -- services (issue 13) ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServicesSettings:
    """Room services (docs/services.md): how they run and how long what they get lasts."""

    #: start every stored service when the server starts
    autostart: bool = False
    #: "podman" (OCI containers) or "process" (the command on the host)
    runner: str = "podman"
    #: the podman executable and the OCI runtime it uses (runc: crun refuses hybrid cgroups)
    podman: str = "podman"
    podman_runtime: str = "runc"
    #: podman's cgroup manager, written into the runner's own CONTAINERS_CONF
    podman_cgroup_manager: str = "cgroupfs"
    #: a static busybox on the host, mounted read-only into each container to load the
    #: environment from a pipe (so it is in neither ``ps`` nor ``podman inspect``)
    podman_env_loader: str = "/bin/busybox"
    #: the network containers join (podman's --network); empty = podman's default
    podman_network: str = ""
    #: registries pulled from over plain http / unverified TLS (tests: a loopback registry)
    insecure_registries: tuple[str, ...] = ()
    #: where runners keep their state (podman's conf, process working directories);
    #: empty = <data_dir>/services
    state_dir: str = ""
    #: a pull (podman pull) may take this long; other podman commands (rm, stop, inspect)
    #: podman_timeout on top of what they wait for themselves
    pull_timeout: float = 300.0
    podman_timeout: float = 30.0
    #: lifetime of a token minted for an environment entry, and how long before it
    #: expires the service is restarted with a fresh one
    token_ttl: int = 3600
    token_renew_margin: float = 300.0
    #: restart after a crash: first delay, doubling up to the max; reset after a run this long
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_reset: float = 60.0
    #: SIGTERM, then SIGKILL after this long
    stop_timeout: float = 10.0
    #: output lines kept per service (in memory only)
    log_lines: int = 1000


# -- LLM proxy (issue 14) -------------------------------------------------------------------


@dataclass(frozen=True)
class LlmSettings:
    """The LLM proxy (``/v1/llm/openai/...``, ``/v1/llm/anthropic/...``): per provider, the
    upstream, the project keys secret and key that hold its API key, and the models allowed
    (names, or prefixes ending in ``*``; empty = any). An empty base URL turns a provider off."""

    openai_base_url: str = "https://api.openai.com/v1"
    openai_secret: str = "llm"
    openai_key: str = "OPENAI_API_KEY"
    openai_models: tuple[str, ...] = ()
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_secret: str = "llm"
    anthropic_key: str = "ANTHROPIC_API_KEY"
    anthropic_models: tuple[str, ...] = ()
    #: upstream connect timeout, longest wait for the next bytes of an answer, and the total
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    timeout: float = 600.0
    #: largest request body forwarded (413 above it)
    max_body_size: int = 4194304
    #: a JSON answer is kept up to this size to read its usage (it streams through regardless)
    max_usage_scan: int = 8388608
    #: tokens (input + output) a day per identity and per room, all providers; 0 = no budget
    identity_daily_tokens: int = 0
    room_daily_tokens: int = 0
    #: requests per identity and room: a second on average, and at once; a rate of 0 = off
    requests_rate: float = 2.0
    requests_burst: int = 60
    #: how long a provider key read from its secret is kept in memory (rotations show after this)
    key_cache_ttl: float = 60.0
    #: how often a silent stream checks whether its client went away (then the upstream is cancelled)
    disconnect_check_interval: float = 0.5
# -- telemetry (issue 18: operations) -----------------------------------------------------------


@dataclass(frozen=True)
class TelemetrySettings:
    """Prometheus series and OpenTelemetry traces (docs/operations.md). The standard
    ``OTEL_*`` variables set the trace settings (see :func:`_otel_environment`)."""

    #: the detailed series (latencies, vault and OAuth outcomes, queues); the six basic
    #: series of /metrics are always on
    metrics: bool = True
    #: "none" (traces off), "otlp" (OTLP over HTTP) or "console"; OTEL_TRACES_EXPORTER
    traces_exporter: str = "none"
    #: where OTLP spans go; empty = the exporter's default (http://localhost:4318/v1/traces)
    otlp_endpoint: str = ""
    #: the service.name of every span; OTEL_SERVICE_NAME
    service_name: str = "roomsvc"


# -- MCP servers as room toolkits (issue 17) ------------------------------------------------------


@dataclass(frozen=True)
class McpSettings:
    """MCP servers bridged into rooms (docs/mcp.md)."""

    #: MCP server URLs (``*`` = prefix wildcard) the operator trusts although they are on
    #: http or a loopback/private address (an internal MCP server). Only the server itself and
    #: its own metadata location: the authorization servers it names still pass the rules.
    trusted_servers: tuple[str, ...] = ()
    #: one MCP request of the bridge (list or call) may take this long
    upstream_timeout: float = 60.0


# -- several nodes: fan-out between them over Redis (issue 15) -----------------------------------


@dataclass(frozen=True)
class ClusterSettings:
    """Several roomsvc nodes on one PostgreSQL database, their rooms joined over Redis
    (docs/scale.md "Fan-out between nodes")."""

    enabled: bool = False
    #: redis:// or rediss:// URL WITHOUT a password (ROOMSVC_CLUSTER_REDIS_PASSWORD)
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: from ROOMSVC_CLUSTER_REDIS_PASSWORD only (never the TOML file or the URL)
    redis_password: SecretStr = field(default_factory=lambda: SecretStr(""))
    #: this node's name among the others; empty = a random one at each start
    node_id: str = ""
    #: the start of every Redis key and channel of this cluster (several clusters, one Redis)
    prefix: str = "roomsvc"
    #: seconds between this node's heartbeats (and its looks for nodes that stopped beating)
    heartbeat_interval: float = 1.0
    #: a node silent this long has died: the others drop its participants within
    #: node_expiry + heartbeat_interval seconds
    node_expiry: float = 5.0
    #: seconds to connect to Redis, and for one command, before it counts as unavailable
    redis_timeout: float = 2.0


def _otel_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The standard OpenTelemetry variables as ``ROOMSVC_TELEMETRY_*`` ones (which win when
    both are set). Traces stay off unless OTEL_TRACES_EXPORTER names an exporter;
    OTEL_SDK_DISABLED=true keeps them off whatever else is set."""
    out: dict[str, str] = {}
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        out["ROOMSVC_TELEMETRY_TRACES_EXPORTER"] = exporter
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        out["ROOMSVC_TELEMETRY_TRACES_EXPORTER"] = "none"
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        out["ROOMSVC_TELEMETRY_OTLP_ENDPOINT"] = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        # the base endpoint: the signal's path is appended (OTLP/HTTP specification)
        out["ROOMSVC_TELEMETRY_OTLP_ENDPOINT"] = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if env.get("OTEL_SERVICE_NAME"):
        out["ROOMSVC_TELEMETRY_SERVICE_NAME"] = env["OTEL_SERVICE_NAME"]
    return out


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
    services: ServicesSettings = field(default_factory=ServicesSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    # -- telemetry (issue 18)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    # -- MCP servers as room toolkits (issue 17)
    mcp: McpSettings = field(default_factory=McpSettings)
    # -- several nodes over Redis (issue 15)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

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
    def services_dir(self) -> Path:
        return Path(self.services.state_dir) if self.services.state_dir else self.data_dir / "services"

    @property
    def master_key_path(self) -> Path:
        return Path(self.keys.master_key_file) if self.keys.master_key_file else self.data_dir / "master.key"

    def public_url(self, bound_port: int | None = None) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        return f"http://{_url_host(self.server.host)}:{bound_port or self.server.port}"


#: keys that may only come from the environment (or a file the environment names)
_ENV_ONLY = {("keys", "master_key"): "ROOMSVC_MASTER_KEY", ("keys", "signing_key"): "ROOMSVC_SIGNING_KEY",
             ("storage", "postgres_password"): "ROOMSVC_STORAGE_POSTGRES_PASSWORD",
             ("cluster", "redis_password"): "ROOMSVC_CLUSTER_REDIS_PASSWORD"}
_CHOICES = {
    ("server", "log_level"): {"debug", "info", "warning", "error"},
    ("storage", "engine"): {"sqlite", "postgres"},
    ("services", "runner"): {"podman", "process"},
    ("telemetry", "traces_exporter"): {"none", "otlp", "console"},
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
    env = {**_otel_environment(env), **env}  # telemetry (issue 18): OTEL_* as defaults of ROOMSVC_TELEMETRY_*
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
                    alt = f" or {sf.name}.{f.name}_file" if sf.name == "keys" else ""  # no file variant for a password
                    raise ConfigError(key, f"never put a key in the config file; set {_ENV_ONLY[(sf.name, f.name)]}{alt}")
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
    # -- PostgreSQL (issue 15): libpq's own variable as a fallback for the password
    if not sections["storage"].postgres_password and env.get("PGPASSWORD"):
        sections["storage"] = dataclasses.replace(sections["storage"], postgres_password=SecretStr(env["PGPASSWORD"]))
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
    _validate_services(s)
    _validate_llm(s)
    for entry in s.mcp.trusted_servers:  # issue 17
        parts = urlsplit(entry.rstrip("*"))
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError("mcp.trusted_servers", f"{entry[:80]!r} is not an absolute http(s) URL (prefix)")
    if s.mcp.upstream_timeout <= 0:
        raise ConfigError("mcp.upstream_timeout", "must be above 0")
    if s.server.public_url:
        parts = urlsplit(s.server.public_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError("server.public_url", "must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ConfigError("server.public_url", "must not carry a query or fragment")
        if parts.scheme != "https" and not s.server.allow_insecure_loopback:
            raise ConfigError("server.public_url", "must be https (set server.allow_insecure_loopback for development)")
    _validate_postgres(s.storage)
    _validate_cluster(s)


def _validate_cluster(s: Settings) -> None:
    """issue 15: several nodes need a shared database, and the Redis URL holds no password."""
    c = s.cluster
    if c.heartbeat_interval <= 0 or c.redis_timeout <= 0:
        raise ConfigError("cluster.heartbeat_interval", "cluster.heartbeat_interval and cluster.redis_timeout must be above 0")
    if c.node_expiry <= c.heartbeat_interval:
        raise ConfigError("cluster.node_expiry", "must be longer than cluster.heartbeat_interval (a few beats)")
    if not c.prefix or any(ch in c.prefix for ch in " \t\r\n"):
        raise ConfigError("cluster.prefix", "must be a non-empty name without spaces")
    if c.node_id and (len(c.node_id) > 64 or not all(ch.isalnum() or ch in "-_." for ch in c.node_id)):
        raise ConfigError("cluster.node_id", "letters, digits, '-', '_' and '.', at most 64")
    parts = urlsplit(c.redis_url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ConfigError("cluster.redis_url", "must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0")
    if parts.password is not None or "password=" in parts.query.lower():
        raise ConfigError(
            "cluster.redis_url",
            "contains a password; remove it from the URL and set ROOMSVC_CLUSTER_REDIS_PASSWORD in the environment instead",
        )
    if c.enabled and s.storage.engine != "postgres":
        raise ConfigError(
            "cluster.enabled",
            "several nodes need one shared database: set storage.engine = \"postgres\" (SQLite is one node's own file)",
        )


def _validate_postgres(s: StorageSettings) -> None:
    """issue 15: a DSN is needed for the postgres engine, and never holds the password.
    (Messages never quote the DSN: it might be the password that is wrong with it.)"""
    if s.postgres_connect_timeout <= 0 or s.postgres_command_timeout <= 0:
        raise ConfigError("storage.postgres_connect_timeout", "the PostgreSQL timeouts must be above 0")
    if s.postgres_pool_size < 1:
        raise ConfigError("storage.postgres_pool_size", "must be at least 1")
    dsn = s.postgres_dsn.strip()
    if s.engine == "postgres" and not dsn:
        raise ConfigError(
            "storage.postgres_dsn", "is empty: the postgres engine needs one, e.g. postgresql://roomsvc@db-host:5432/roomsvc"
        )
    if not dsn:
        return
    if dsn.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(dsn)
        has_password = parts.password is not None or "password=" in parts.query.lower()
    elif "=" in dsn:
        has_password = any(item.split("=", 1)[0].strip().lower() == "password" for item in dsn.split())
    else:
        raise ConfigError("storage.postgres_dsn", "is neither a postgresql:// URL nor a key=value connection string")
    if has_password:
        raise ConfigError(
            "storage.postgres_dsn",
            "contains a password; remove it from the DSN and set ROOMSVC_STORAGE_POSTGRES_PASSWORD "
            "(or PGPASSWORD) in the environment instead",
        )


def _validate_services(s: Settings) -> None:
    v = s.services
    if v.token_ttl < 1 or v.token_ttl > s.tokens.max_ttl:
        raise ConfigError("services.token_ttl", "must be between 1 and tokens.max_ttl")
    if v.token_renew_margin >= v.token_ttl:
        raise ConfigError("services.token_renew_margin", "must be shorter than services.token_ttl")
    if v.backoff_initial <= 0 or v.backoff_max < v.backoff_initial:
        raise ConfigError("services.backoff_max", "must be at least services.backoff_initial, which must be above 0")
    if v.log_lines < 1:
        raise ConfigError("services.log_lines", "must be at least 1")


def _validate_llm(s: Settings) -> None:
    for provider in ("openai", "anthropic"):
        url = getattr(s.llm, f"{provider}_base_url")
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"llm.{provider}_base_url", "must be an absolute http(s) URL without query or fragment")
        if parts.scheme != "https" and not s.server.allow_insecure_loopback:
            raise ConfigError(f"llm.{provider}_base_url", "must be https (set server.allow_insecure_loopback for development)")
    for key in ("connect_timeout", "read_timeout", "timeout", "max_body_size", "max_usage_scan", "disconnect_check_interval"):
        if getattr(s.llm, key) <= 0:
            raise ConfigError(f"llm.{key}", "must be above 0")
    if s.llm.requests_rate > 0 and s.llm.requests_burst < 1:
        raise ConfigError("llm.requests_burst", "must be at least 1 (set llm.requests_rate to 0 to turn the limit off)")


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
