"""The composition root: the only module that reads Settings, picks the storage engine
and wires every layer together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from aiohttp import WSCloseCode, web

from roomsvc.clock import Clock, SystemClock
from roomsvc.config import Settings
from roomsvc.crypto.envelope import EnvelopeCipher
from roomsvc.crypto.keyring import KeyringService
from roomsvc.crypto.keys import KeySources, LoadedKeys, load_keys
from roomsvc.crypto.tokens import TokenVerifier
from roomsvc.domain.audit import Auditor
from roomsvc.domain.principal import Principal, principal_from_claims
from roomsvc.domain.project_secrets import ProjectSecretService
from roomsvc.domain.rooms import RoomService
from roomsvc.domain.secrets import SecretService
from roomsvc.domain.services import Services, WsLimits
from roomsvc.storage.sqlite.store import SqliteStore, database_exists
from roomsvc.transport.http.keys import CONNECTIONS, METRICS, READY, SERVICES
from roomsvc.transport.http.middleware import AccessLogger, errors_middleware
from roomsvc.transport.http.routes import add_routes
from roomsvc.transport.metrics import Metrics
from roomsvc.transport.ws.native import NativeHandler

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


@dataclass
class Runtime:
    settings: Settings
    store: SqliteStore
    services: Services
    keys: LoadedKeys
    verifier: TokenVerifier
    #: the port actually bound (set once listening; used for default links)
    bound_port: int | None = None


async def open_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Load keys, open and migrate storage, unseal the keyring, wire the services.

    Raises:
        Sealed: the database's master key is missing or wrong.
        ConfigError: a key file is unreadable or malformed.
    """
    clock = clock or SystemClock()
    keys = load_keys(key_sources(settings), database_exists=database_exists(settings.sqlite_path))
    store = await SqliteStore.open(
        settings.sqlite_path, busy_timeout_ms=settings.storage.busy_timeout_ms, batch_max=settings.secrets.audit_batch_max
    )
    try:
        cipher = EnvelopeCipher()
        keyring = KeyringService(store=store, cipher=cipher, master=keys.master, clock=clock)
        await keyring.unseal()
    except BaseException:
        await store.close()
        raise
    verifier = TokenVerifier(
        keys.signing, clock=clock, require_exp=settings.tokens.require_exp,
        leeway=settings.tokens.leeway, max_ttl=settings.tokens.max_ttl,
    )
    auditor = Auditor(store, clock)
    runtime_ref: list[Runtime] = []

    def authenticate(token: str) -> Principal:
        return principal_from_claims(verifier.verify(token))

    def public_url() -> str:
        return settings.public_url(runtime_ref[0].bound_port if runtime_ref else None)

    ws = settings.websocket
    services = Services(
        rooms=RoomService(
            rooms=store, clock=clock, auto_create=settings.rooms.auto_create,
            max_participants=settings.rooms.max_participants,
            max_connections_per_identity=ws.max_connections_per_identity,
        ),
        secrets=SecretService(
            store=store, cipher=cipher, auditor=auditor, clock=clock,
            max_value_size=settings.secrets.max_value_size, max_versions=settings.secrets.max_versions,
        ),
        project_secrets=ProjectSecretService(
            store=store, cipher=cipher, auditor=auditor, clock=clock, max_value_size=settings.secrets.max_value_size
        ),
        keys=keyring,
        auditor=auditor,
        authenticate=authenticate,
        backup=store.backup,
        ws=WsLimits(
            max_message_size=ws.max_message_size, heartbeat=ws.heartbeat, auth_timeout=ws.auth_timeout,
            outbound_queue=ws.outbound_queue, send_timeout=ws.send_timeout,
            max_concurrent_requests=ws.max_concurrent_requests, max_bad_messages=ws.max_bad_messages,
            max_call_timeout=ws.max_call_timeout,
        ),
        public_url=public_url,
    )
    runtime = Runtime(settings=settings, store=store, services=services, keys=keys, verifier=verifier)
    runtime_ref.append(runtime)
    return runtime


def build_app(runtime: Runtime, *, extra: Callable[[web.Application, Runtime], None] | None = None) -> web.Application:
    settings = runtime.settings
    app = web.Application(
        middlewares=[errors_middleware],
        client_max_size=settings.websocket.max_message_size * 2,
    )
    metrics = Metrics()
    connections: set = set()
    app[SERVICES] = runtime.services
    app[METRICS] = metrics
    app[CONNECTIONS] = connections
    app[READY] = {"ready": True}
    add_routes(app)
    app.router.add_get("/v1/rooms/{room}/ws", NativeHandler(runtime.services, metrics, connections))
    if extra is not None:
        extra(app, runtime)

    async def close_connections(app: web.Application) -> None:
        app[READY]["ready"] = False
        for conn in list(app[CONNECTIONS]):
            await conn.close(WSCloseCode.GOING_AWAY, "server shutting down")

    async def close_store(app: web.Application) -> None:
        await runtime.store.close()

    app.on_shutdown.append(close_connections)
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
