"""The composition root: the only module that reads Settings, picks the storage engine
and wires every layer together."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, web

from roomsvc.clock import Clock, SystemClock
from roomsvc.config import Settings, environment
from roomsvc.connectors import load_connectors
from roomsvc.crypto.api_keys import api_key_room_token
from roomsvc.crypto.envelope import EnvelopeCipher
from roomsvc.crypto.keyring import KeyringService
from roomsvc.crypto.keys import KeySources, LoadedKeys, load_keys
from roomsvc.crypto.tokens import SigningKeyring, TokenVerifier, mint
from roomsvc.domain.audit import Auditor
from roomsvc.domain.headers import HeaderService
from roomsvc.domain.housekeeping import HOUSEKEEPING_IDENTITY, AuditPruner, FlowPurger
from roomsvc.domain.key_admin import KeyAdministration
from roomsvc.domain.llm.budget import Budgets
from roomsvc.domain.llm.service import LlmConfig, LlmService, ProviderConfig
from roomsvc.domain.mcp.authorization import McpAuthorization, ProjectRegistrations  # issue 17
from roomsvc.domain.mcp.registration import CIMD_PATH  # issue 17
from roomsvc.domain.oauth.clients import ClientSecrets
from roomsvc.domain.oauth.connectors import ConnectorSpec
from roomsvc.domain.oauth.consent import ConsentFlows
from roomsvc.domain.oauth.ports import FlowRepository, KeyedLock
from roomsvc.domain.oauth.refresh import LocalLocks
from roomsvc.domain.oauth.registry import ConnectorRegistry
from roomsvc.domain.oauth.service import OAuthPolicy, OAuthService
from roomsvc.domain.oauth.tokens import OAuthCredentials
from roomsvc.domain.observe import NO_CLUSTER, NOOP, ClusterObserver, Observer
from roomsvc.domain.principal import Principal, build_claims, principal_from_claims
from roomsvc.domain.project_secrets import ProjectSecretService
from roomsvc.domain.ratelimit import FLOWS, MESSAGES, SECRET_OPS, Rate, RateLimiter
from roomsvc.domain.revocation import TokenService
from roomsvc.domain.rooms import RoomService
from roomsvc.domain.secret_requests import SecretRequestService
from roomsvc.domain.secret_writes import SecretWriter
from roomsvc.domain.secrets import SecretService
from roomsvc.domain.service_catalog import ServiceCatalog
from roomsvc.domain.service_env import EnvironmentResolver
from roomsvc.domain.service_supervisor import Runner, ServiceSupervisor, SupervisorSettings
from roomsvc.domain.service_templates import ServiceInstaller
from roomsvc.domain.services import Services
from roomsvc.integrations.llm_upstream import AiohttpUpstream
from roomsvc.integrations.oauth_provider import AiohttpOAuthProvider
from roomsvc.integrations.podman_runner import PodmanRunner, PodmanSettings
from roomsvc.integrations.process_runner import ProcessRunner
from roomsvc.integrations.redis_bus import RedisBus
from roomsvc.integrations.spec_yaml import load_document
from roomsvc.integrations.templates import render_template
from roomsvc.logs import use_trace_ids
from roomsvc.storage.migrate import MigrationProgress
from roomsvc.storage.postgres.llm_store import PostgresUsageStore
from roomsvc.storage.postgres.locks import PostgresLocks
from roomsvc.storage.postgres.oauth_store import PostgresFlowStore
from roomsvc.storage.postgres.service_store import PostgresServiceStore
from roomsvc.storage.postgres.store import Connector, PostgresStore
from roomsvc.storage.sqlite.llm_store import SqliteUsageStore
from roomsvc.storage.sqlite.oauth_store import SqliteFlowStore
from roomsvc.storage.sqlite.service_store import SqliteServiceStore
from roomsvc.storage.sqlite.store import SqliteStore, database_exists
from roomsvc.transport.http.keys import CONNECTIONS, METRICS, READY, SERVICES, TELEMETRY
from roomsvc.transport.http.llm_api import LLM, LLM_SETTLING, LLM_UPSTREAM, finish_settling
from roomsvc.transport.http.middleware import AccessLogger, errors_middleware
from roomsvc.transport.http.oauth_api import OAuthLinks
from roomsvc.transport.http.observe import observe_middleware
from roomsvc.transport.http.routes import add_routes
from roomsvc.transport.meshagent.accounts import RoomConnectHandler
from roomsvc.transport.meshagent.codec import MeshAgentCodec
from roomsvc.transport.metrics import Metrics
from roomsvc.transport.telemetry import Telemetry
from roomsvc.transport.tracing import Tracing
from roomsvc.transport.ws.connection import Connection
from roomsvc.transport.ws.endpoint import Endpoint, close_revoked
from roomsvc.transport.ws.native import NativeCodec

log = logging.getLogger("roomsvc")


def key_sources(settings: Settings) -> KeySources:
    return KeySources(
        master_key_env=settings.keys.master_key.reveal(),
        master_key_path=settings.master_key_path,
        master_key_configured=bool(settings.keys.master_key_file),
        signing_key_env=settings.keys.signing_key.reveal(),
        signing_key_path=settings.signing_key_path,
        signing_key_configured=bool(settings.keys.signing_key_file),
        generate_if_missing=settings.keys.generate_if_missing,
    )


# -- storage engine choice (issue 15): the one place that picks sqlite or postgres ------

#: a storage engine: both fill :class:`roomsvc.domain.ports.Store`
Engine = SqliteStore | PostgresStore


def postgres_connector(settings: Settings) -> Connector:
    s = settings.storage
    return Connector(
        s.postgres_dsn, password=s.postgres_password.reveal() or None, connect_timeout=s.postgres_connect_timeout,
        command_timeout=s.postgres_command_timeout,
    )


async def open_store(
    settings: Settings, *, on_migration: MigrationProgress | None = None, observer: Observer = NOOP
) -> Engine:
    """Open (and migrate) the configured engine's store."""
    if settings.storage.engine == "postgres":
        return await PostgresStore.open(
            postgres_connector(settings), pool_size=settings.storage.postgres_pool_size,
            batch_max=settings.secrets.audit_batch_max, on_migration=on_migration, observer=observer,
        )
    return await SqliteStore.open(
        settings.sqlite_path, busy_timeout_ms=settings.storage.busy_timeout_ms, batch_max=settings.secrets.audit_batch_max,
        on_migration=on_migration, observer=observer,
    )


def flow_store(store: Engine) -> FlowRepository:
    return PostgresFlowStore(store) if isinstance(store, PostgresStore) else SqliteFlowStore(store)


def service_store(store: Engine) -> PostgresServiceStore | SqliteServiceStore:
    return PostgresServiceStore(store) if isinstance(store, PostgresStore) else SqliteServiceStore(store)


def usage_store(store: Engine) -> PostgresUsageStore | SqliteUsageStore:
    return PostgresUsageStore(store) if isinstance(store, PostgresStore) else SqliteUsageStore(store)


async def refresh_lock(store: Engine, settings: Settings) -> tuple[KeyedLock, Callable[[], Awaitable[None]] | None]:
    """The OAuth single-flight lock: in-process on SQLite (one node); on PostgreSQL an
    advisory lock every node shares, on a small pool of its own (so lock holders never
    wait for the readers they need). Returns the lock and what closes it."""
    if isinstance(store, PostgresStore):
        pool = await store.connector.pool(max(2, settings.storage.postgres_pool_size // 2))
        return PostgresLocks(pool), pool.close
    return LocalLocks(), None


# -- end of the storage engine choice ----------------------------------------------------


# -- outbound OAuth in production mode (issue 17) -------------------------------------------


def operator_hosts(settings: Settings, connectors: list[ConnectorSpec]) -> set[str]:
    """The hosts the operator named (connectors' endpoints, inline endpoint prefixes,
    trusted MCP servers): these may resolve to private addresses in production mode."""
    urls = [u for c in connectors for u in (c.issuer, c.authorization_endpoint, c.token_endpoint,
                                             c.revocation_endpoint, c.userinfo_endpoint)]
    urls += [u.rstrip("*") for u in (*settings.oauth.inline_endpoints, *settings.mcp.trusted_servers)]
    hosts = set()
    for url in urls:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            continue
        if host:
            hosts.add(host)
    return hosts


# -- end of outbound OAuth in production mode ------------------------------------------------


# -- several nodes: fan-out over Redis (issue 15) -------------------------------------------


def cluster_bus(settings: Settings, cipher: EnvelopeCipher, observer: ClusterObserver = NO_CLUSTER) -> RedisBus | None:
    """The Redis bus when ``cluster.enabled`` (config refuses it without PostgreSQL)."""
    c = settings.cluster
    if not c.enabled:
        return None
    return RedisBus(
        url=c.redis_url, password=c.redis_password.reveal() or None, node_id=c.node_id or secrets.token_hex(6),
        prefix=c.prefix, heartbeat_interval=c.heartbeat_interval, node_expiry=c.node_expiry, timeout=c.redis_timeout,
        cipher=cipher, observer=observer,
    )


async def _start_cluster(runtime: Runtime, bus: RedisBus) -> None:
    tokens = runtime.services.tokens

    async def revoked_elsewhere() -> None:
        await tokens.load()
        for hook in runtime.on_remote_revoke:
            hook()

    await bus.start(runtime.services.rooms, revoked_elsewhere)
    # a revocation made here reaches the other nodes (which re-read the list, then close sockets)
    tokens.on_revoke(lambda _: bus.publish_revoked())
    runtime.closers.insert(0, bus.close)


# -- end of several nodes ------------------------------------------------------------------


@dataclass
class Runtime:
    settings: Settings
    store: Engine
    services: Services
    keys: LoadedKeys
    verifier: TokenVerifier
    #: the port actually bound (set once listening; used for default links)
    bound_port: int | None = None
    #: closed after the store at shutdown (outbound HTTP sessions)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: periodic housekeeping while serving: (name, interval in seconds, job)
    periodic: list[tuple[str, float, Callable[[], Awaitable[object]]]] = field(default_factory=list)
    #: the LLM proxy's service and its outbound client (set by open_runtime)
    llm: LlmService | None = None
    llm_upstream: AiohttpUpstream | None = None
    #: the app's metrics and tracer (issue 18), handed to every service as its Observer
    telemetry: Telemetry = field(default_factory=lambda: Telemetry(Metrics(), Tracing()))
    #: issue 15: the fan-out between nodes (cluster.enabled), and what runs when another
    #: node revoked a token (after this node re-read the revocations)
    bus: RedisBus | None = None
    on_remote_revoke: list[Callable[[], None]] = field(default_factory=list)


def open_telemetry(settings: Settings, tracing: Tracing | None = None) -> Telemetry:
    """The metrics and the tracer (``[telemetry]``, OTEL_*); tests pass their own tracer."""
    t = settings.telemetry
    tracing = tracing or Tracing.from_settings(exporter=t.traces_exporter, endpoint=t.otlp_endpoint, service_name=t.service_name)
    use_trace_ids(tracing.current_ids if tracing.enabled else None)
    return Telemetry(Metrics(), tracing, detailed=t.metrics)


async def open_runtime(settings: Settings, *, clock: Clock | None = None, tracing: Tracing | None = None) -> Runtime:
    """Load keys, open and migrate storage, unseal the keyring, wire the services.

    Raises:
        Sealed: the database's master key is missing or wrong.
        ConfigError: a key file is unreadable or malformed.
    """
    clock = clock or SystemClock()
    connectors = load_connectors(
        settings.oauth.connectors_dir, environ=environment(), insecure_ok=settings.server.allow_insecure_loopback
    )
    telemetry = open_telemetry(settings, tracing)
    if settings.storage.engine == "postgres":
        store: Engine = await open_store(settings, observer=telemetry)
        try:
            # a database that holds keys must be opened with its master key, never a new one
            keys = load_keys(key_sources(settings), database_exists=bool(await store.list_keys()))
        except BaseException:
            await store.close()
            raise
    else:
        keys = load_keys(key_sources(settings), database_exists=database_exists(settings.sqlite_path))
        store = await open_store(settings, observer=telemetry)
    telemetry.metrics.ops.watch_write_queue(store.queue_depth)
    try:
        lock, close_lock = await refresh_lock(store, settings)
    except BaseException:
        await store.close()
        raise
    try:
        cipher = EnvelopeCipher()
        keyring = KeyringService(store=store, cipher=cipher, master=keys.master, clock=clock)
        # nodes starting together on an empty PostgreSQL database take turns, so the
        # vault's first key is created once and every node knows it
        async with lock.hold("roomsvc:unseal"):
            await keyring.unseal()
    except BaseException:
        await store.close()
        if close_lock is not None:
            await close_lock()
        raise
    verifier = TokenVerifier(
        keys.signing, clock=clock, require_exp=settings.tokens.require_exp,
        leeway=settings.tokens.leeway, max_ttl=settings.tokens.max_ttl,
    )
    auditor = Auditor(store, clock, telemetry)
    tokens = TokenService(store=store, auditor=auditor, clock=clock, leeway=settings.tokens.leeway)
    try:
        await tokens.load()
    except BaseException:
        await store.close()
        if close_lock is not None:
            await close_lock()
        raise
    runtime_ref: list[Runtime] = []

    def authenticate(token: str) -> Principal:
        principal = principal_from_claims(verifier.verify(token))
        tokens.check(principal)  # revoked (expiry is the verifier's)
        return principal

    def public_url() -> str:
        return settings.public_url(runtime_ref[0].bound_port if runtime_ref else None)

    provider = AiohttpOAuthProvider(
        connect_timeout=settings.oauth.http_connect_timeout, timeout=settings.oauth.http_timeout,
        max_response_size=settings.oauth.max_response_size,
        # issue 17: in production names must resolve to public addresses, but for the hosts the operator named
        public_only=not settings.server.allow_insecure_loopback, exempt_hosts=operator_hosts(settings, connectors),
    )
    bus = cluster_bus(settings, cipher, telemetry.cluster)
    services = _services(
        settings, store=store, cipher=cipher, keyring=keyring, auditor=auditor, tokens=tokens, clock=clock,
        provider=provider, connectors=connectors, authenticate=authenticate, public_url=public_url, lock=lock,
        signing=keys.signing, bus=bus,
    )
    runtime = Runtime(
        settings=settings, store=store, services=services, keys=keys, verifier=verifier, telemetry=telemetry, bus=bus
    )
    if bus is not None:
        try:
            await _start_cluster(runtime, bus)
        except BaseException:
            await store.close()
            if close_lock is not None:
                await close_lock()
            raise
    _add_housekeeping(runtime, store, clock)
    if isinstance(store, PostgresStore) and settings.storage.postgres_key_reload_interval > 0:
        # issue 15: follow a key rotation made on another node
        runtime.periodic.append(("key reload", settings.storage.postgres_key_reload_interval, keyring.reload))
    runtime.closers.append(provider.close)
    if close_lock is not None:
        runtime.closers.append(close_lock)
    _add_llm(runtime, clock)

    async def flush_spans() -> None:
        telemetry.tracing.shutdown()

    runtime.closers.append(flush_spans)
    runtime_ref.append(runtime)
    return runtime


def _services(
    settings: Settings, *, store: Engine, cipher: EnvelopeCipher, keyring: KeyringService, auditor: Auditor,
    tokens: TokenService, clock: Clock, provider: AiohttpOAuthProvider, connectors: list[ConnectorSpec],
    authenticate: Callable[[str], Principal], public_url: Callable[[], str], lock: KeyedLock, signing: SigningKeyring,
    bus: RedisBus | None = None,
) -> Services:
    """Every service, each built once from what it needs, in dependency order.

    The one subtle join is between the vault and OAuth: reading an OAuth credential
    refreshes it and deleting one revokes its grant, while OAuth writes credentials into
    the vault. Both write through one :class:`SecretWriter`, so the order is: writer ->
    OAuth credentials (vault, refresher, hooks) -> SecretService -> the services above it.
    """
    ws, o, insecure = settings.websocket, settings.oauth, settings.server.allow_insecure_loopback
    limiter = rate_limiter(settings, clock)
    rooms = RoomService(
        rooms=store, clock=clock, auto_create=settings.rooms.auto_create, max_participants=settings.rooms.max_participants,
        max_connections_per_identity=ws.max_connections_per_identity, limiter=limiter,
        max_attributes=settings.rooms.max_attributes, max_attributes_size=settings.rooms.max_attributes_size,
        bus=bus,
    )
    project_secrets = ProjectSecretService(
        store=store, cipher=cipher, auditor=auditor, clock=clock, max_value_size=settings.secrets.max_value_size
    )
    writer = SecretWriter(
        store=store, cipher=cipher, auditor=auditor, clock=clock, max_value_size=settings.secrets.max_value_size,
        max_versions=settings.secrets.max_versions,
    )
    registry = ConnectorRegistry(connectors, provider=provider, clock=clock, discovery_ttl=o.discovery_ttl, insecure_ok=insecure)
    credentials = OAuthCredentials(
        store=store, cipher=cipher, writer=writer, provider=provider, lock=lock, rooms=rooms, auditor=auditor,
        clock=clock, refresh_margin=o.refresh_margin, assumed_token_lifetime=o.assumed_token_lifetime,
        refresh_retries=o.refresh_retries, refresh_backoff=o.refresh_backoff,
        clients=ClientSecrets(registry, lambda secret_id, service: project_secrets.resolve_keys(secret_id, service=service)),
    )
    # callers' own secret operations are charged to their rate limit here; services that
    # act for a caller who has already been charged use ``uncharged`` (one call counts once)
    secrets = SecretService(
        store=store, writer=writer, cipher=cipher, auditor=auditor, clock=clock, oauth=credentials,
        leeway=settings.tokens.leeway, limiter=limiter,
    )
    uncharged = secrets.uncharged()
    policy = OAuthPolicy(
        inline_endpoints=o.inline_endpoints, refresh_margin=o.refresh_margin,
        assumed_token_lifetime=o.assumed_token_lifetime, state_ttl=o.state_ttl, flow_timeout=o.flow_timeout,
        max_flow_timeout=o.max_flow_timeout, min_flow_timeout=o.min_flow_timeout,
        max_pending_per_identity=o.max_pending_per_identity,
        refresh_retries=o.refresh_retries, refresh_backoff=o.refresh_backoff, insecure_ok=insecure,
    )
    consent = ConsentFlows(
        rooms=rooms, cipher=cipher, flows=flow_store(store), provider=provider, vault=credentials.vault,
        clients=credentials.clients, auditor=auditor, clock=clock, links=OAuthLinks(public_url), policy=policy,
        limiter=limiter,
    )
    # -- MCP servers as room toolkits (issue 17) --
    mcp = McpAuthorization(
        http=provider, store=ProjectRegistrations(project_secrets), registry=registry, connectors=connectors, clock=clock,
        insecure_ok=insecure, redirect_uri=OAuthLinks(public_url).callback_url,
        cimd_url=lambda: public_url().rstrip("/") + CIMD_PATH, trusted_servers=settings.mcp.trusted_servers,
    )
    mcp.discovery_ttl = o.discovery_ttl
    catalog = ServiceCatalog(store=service_store(store), auditor=auditor, clock=clock, load=load_document)
    return Services(
        rooms=rooms,
        secrets=secrets,
        project_secrets=project_secrets,
        key_admin=KeyAdministration(
            keyring=keyring, auditor=auditor, backup=lambda name: store.backup(name, directory=settings.backup_dir)
        ),
        auditor=auditor,
        authenticate=authenticate,
        public_url=public_url,
        headers=HeaderService(secrets=uncharged, tokens=credentials, limiter=limiter, auditor=auditor),
        oauth=OAuthService(
            rooms=rooms, secrets=uncharged, credentials=credentials, consent=consent, registry=registry,
            auditor=auditor, policy=policy, limiter=limiter, mcp=mcp,
        ),
        secret_requests=SecretRequestService(
            rooms=rooms, secrets=uncharged, auditor=auditor, default_timeout=o.flow_timeout,
            max_timeout=o.max_flow_timeout, min_timeout=o.min_flow_timeout,
            max_pending_per_identity=o.max_pending_per_identity, limiter=limiter,
            cipher=cipher if bus is not None else None,  # issue 15: answers sealed between nodes
        ),
        audit_pruner=AuditPruner(
            repo=store, auditor=auditor, clock=clock, retention=settings.secrets.audit_retention,
            batch=settings.secrets.audit_prune_batch,
        ),
        tokens=tokens,
        service_catalog=catalog,
        service_installer=ServiceInstaller(catalog=catalog, secrets=uncharged, load=load_document, render=render_template),
        service_supervisor=_service_supervisor(settings, catalog=catalog, auditor=auditor, clock=clock, secrets=uncharged,
                                               project_secrets=project_secrets, signing=signing),
        mcp=mcp,
    )


# -- services (issue 13) --------------------------------------------------------------------------


def _service_supervisor(
    settings: Settings, *, catalog: ServiceCatalog, auditor: Auditor, clock: Clock, secrets: SecretService,
    project_secrets: ProjectSecretService, signing: SigningKeyring,
) -> ServiceSupervisor:
    """The room services' supervisor with the configured runner."""
    s = settings.services

    def mint_service_token(identity: str, room: str, role: str, api: Mapping[str, Any], ttl: int) -> str:
        now = int(clock.now())
        return mint(signing, build_claims(identity=identity, room=room, role=role, api=api, issued_at=now, ttl=ttl))

    resolver = EnvironmentResolver(
        secrets=secrets, project=project_secrets, mint=mint_service_token, auditor=auditor, clock=clock, token_ttl=s.token_ttl
    )
    runner: Runner
    if s.runner == "process":
        runner = ProcessRunner(work_dir=settings.services_dir / "process")
    else:
        runner = PodmanRunner(PodmanSettings(
            executable=s.podman, runtime=s.podman_runtime, cgroup_manager=s.podman_cgroup_manager,
            env_loader=s.podman_env_loader, insecure_registries=s.insecure_registries,
            state_dir=settings.services_dir, pull_timeout=s.pull_timeout, network=s.podman_network,
            command_timeout=s.podman_timeout,
        ))
    return ServiceSupervisor(
        catalog=catalog, resolver=resolver, runner=runner, clock=clock, observer=auditor.observer,
        settings=SupervisorSettings(
            backoff_initial=s.backoff_initial, backoff_max=s.backoff_max, backoff_reset=s.backoff_reset,
            stop_timeout=s.stop_timeout, token_renew_margin=s.token_renew_margin, log_lines=s.log_lines,
        ),
    )


# -- LLM proxy (issue 14) ------------------------------------------------------------------------


def _add_llm(runtime: Runtime, clock: Clock) -> None:
    """The LLM proxy's service (provider keys through the project secrets' resolver) and
    its one outbound session, closed with the others."""
    s = runtime.settings.llm
    providers = {
        name: ProviderConfig(
            name=name, base_url=getattr(s, f"{name}_base_url"), secret_id=getattr(s, f"{name}_secret"),
            key_name=getattr(s, f"{name}_key"), models=getattr(s, f"{name}_models"),
        )
        for name in ("openai", "anthropic")
    }
    runtime.llm = LlmService(
        repo=usage_store(runtime.store), project_secrets=runtime.services.project_secrets,
        auditor=runtime.services.auditor, clock=clock,
        config=LlmConfig(
            providers=providers, budgets=Budgets(s.identity_daily_tokens, s.room_daily_tokens),
            requests=Rate(s.requests_rate, s.requests_burst), max_buckets=runtime.settings.limits.max_buckets,
            key_cache_ttl=s.key_cache_ttl, leeway=runtime.settings.tokens.leeway, max_body_size=s.max_body_size,
            max_usage_scan=s.max_usage_scan, disconnect_check_interval=s.disconnect_check_interval,
        ),
    )
    runtime.llm_upstream = AiohttpUpstream(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout, timeout=s.timeout)
    runtime.closers.append(runtime.llm_upstream.close)


def rate_limiter(settings: Settings, clock: Clock) -> RateLimiter:
    lim = settings.limits
    return RateLimiter(
        {
            SECRET_OPS: Rate(lim.secret_ops_rate, lim.secret_ops_burst),
            FLOWS: Rate(lim.flows_rate, lim.flows_burst),
            MESSAGES: Rate(lim.messages_rate, lim.messages_burst),
        },
        clock=clock, max_buckets=lim.max_buckets,
    )


def _add_housekeeping(runtime: Runtime, store: Engine, clock: Clock) -> None:
    """The timed jobs: the OAuth flow purge and the audit prune (also ``roomsvc audit prune``)."""
    s = runtime.settings
    pruner = runtime.services.audit_pruner
    purger = FlowPurger(
        flows=flow_store(store), clock=clock, grace=s.oauth.flow_purge_grace,
        # a code exchange that began before the deadline: token request, then userinfo
        exchange_allowance=2 * (s.oauth.http_connect_timeout + s.oauth.http_timeout),
    )
    runtime.periodic.append(("oauth flow purge", s.oauth.flow_purge_interval, purger.purge))
    if s.secrets.audit_retention > 0 and s.secrets.audit_prune_interval > 0:
        runtime.periodic.append(("audit prune", s.secrets.audit_prune_interval, lambda: pruner.prune(HOUSEKEEPING_IDENTITY)))


async def _run_periodic(name: str, interval: float, job: Callable[[], Awaitable[object]]) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled; a failure is logged, and
    the next round tries again."""
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - housekeeping must outlive a bad round
            log.exception("%s failed; trying again in %g s", name, interval)


def build_app(runtime: Runtime, *, extra: Callable[[web.Application, Runtime], None] | None = None) -> web.Application:
    settings = runtime.settings
    app = web.Application(
        # observe outermost: it sees the status the errors middleware answered with
        middlewares=[observe_middleware, errors_middleware],
        client_max_size=settings.server.max_body_size,
    )
    telemetry = runtime.telemetry
    metrics = telemetry.metrics
    app[TELEMETRY] = telemetry
    connections: set[Connection] = set()
    app[SERVICES] = runtime.services
    app[METRICS] = metrics
    app[CONNECTIONS] = connections
    app[READY] = {"ready": True}
    # LLM proxy (issue 14)
    assert runtime.llm is not None and runtime.llm_upstream is not None
    app[LLM] = runtime.llm
    app[LLM_UPSTREAM] = runtime.llm_upstream
    app[LLM_SETTLING] = set()
    app.on_shutdown.append(finish_settling)
    add_routes(app)
    for path, codec in (("/v1/rooms/{room}/ws", NativeCodec()), ("/rooms/{room}", MeshAgentCodec())):
        app.router.add_get(
            path, Endpoint(codec, runtime.services, runtime.settings.websocket, metrics, connections, telemetry=telemetry)
        )
    app.router.add_post(
        "/accounts/projects/{project_id}/rooms/{room}/connect",
        RoomConnectHandler(
            lambda key, project, room: api_key_room_token(
                runtime.keys.signing, key, project, room, issued_at=int(time.time()), ttl=settings.tokens.default_ttl
            ),
            runtime.services.public_url,
        ),
    )
    if extra is not None:
        extra(app, runtime)
    services = runtime.services
    # a revocation closes the open sockets it concerns at once (both protocols)
    services.tokens.on_revoke(lambda _: close_revoked(services, connections))
    # issue 15: and so does a revocation made on another node
    runtime.on_remote_revoke.append(lambda: close_revoked(services, connections))

    async def close_connections(app: web.Application) -> None:
        app[READY]["ready"] = False
        # a name first: inside list(...) mypy would look the key up as AppKey[Iterable[...]]
        open_now: set[Connection] = app[CONNECTIONS]
        for conn in list(open_now):
            await conn.close(WSCloseCode.GOING_AWAY, "server shutting down")

    async def close_store(app: web.Application) -> None:
        await runtime.store.close()
        for close in runtime.closers:
            await close()

    async def housekeeping(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_run_periodic(*job), name=job[0]) for job in runtime.periodic]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def room_services(app: web.Application) -> AsyncIterator[None]:
        # services (issue 13): started in the background (a slow pull must not delay
        # serving), stopped before the store closes
        supervisor = runtime.services.service_supervisor
        starting = asyncio.create_task(supervisor.autostart()) if settings.services.autostart else None
        yield
        if starting is not None:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await supervisor.close()

    app.on_shutdown.append(close_connections)
    # registered before the cleanup below runs, so the jobs stop before the store closes
    app.cleanup_ctx.append(housekeeping)
    app.cleanup_ctx.append(room_services)
    app.on_cleanup.append(close_store)
    return app


async def start_site(app: web.Application, runtime: Runtime) -> web.AppRunner:
    """Listen on the configured address; records the bound port (port 0 = any free one)."""
    settings = runtime.settings
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("roomsvc.access") if settings.server.access_log else None,
        shutdown_timeout=settings.server.shutdown_timeout,
        handle_signals=False,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port, reuse_address=True)
    await site.start()
    addresses = runner.addresses
    runtime.bound_port = addresses[0][1] if addresses else settings.server.port
    return runner
