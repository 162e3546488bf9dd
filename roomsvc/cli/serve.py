"""``roomsvc serve``: start the server and run until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
from pathlib import Path

from roomsvc import __version__
from roomsvc.app import Runtime, build_app, open_runtime, start_site
from roomsvc.config import Settings, check_serving

log = logging.getLogger("roomsvc")


async def serve(settings: Settings, *, extra=None) -> int:
    check_serving(settings)
    runtime = await open_runtime(settings)
    _announce_modes(settings, runtime)
    runner = await start_site(build_app(runtime, extra=extra), runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # the banner says "stop with SIGTERM": the handlers are in place before anyone reads it
    _print_banner(settings, runtime)
    await stop.wait()
    log.info("shutting down: closing connections (1001) and flushing storage")
    await runner.cleanup()
    log.info("stopped")
    return 0


def _announce_modes(settings: Settings, runtime: Runtime) -> None:
    if runtime.keys.development_mode:
        bar = "!" * 78
        log.warning(bar)
        log.warning("DEVELOPMENT MODE: generated new keys in %s", ", ".join(runtime.keys.generated))
        log.warning("Back these files up; without master.key the stored secrets cannot be read.")
        log.warning("For production, provide keys.master_key_file / ROOMSVC_MASTER_KEY yourself.")
        log.warning(bar)
    if settings.server.allow_insecure_loopback:
        log.warning(
            "server.allow_insecure_loopback is ON: http links, non-Secure cookies and loopback upstreams "
            "are allowed. Never use this in production."
        )


def _self_command() -> str:
    """How the person who started the server can run roomsvc again (for the banner)."""
    exe = Path(sys.argv[0])
    if exe.name == "roomsvc":
        on_path = shutil.which("roomsvc")
        if on_path and Path(on_path).resolve() == exe.resolve():
            return "roomsvc"
        try:
            return str(exe.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(exe.resolve())
    return f"{sys.executable} -m roomsvc"


def _print_banner(settings: Settings, runtime: Runtime) -> None:
    base = runtime.services.public_url()
    host = settings.server.host if settings.server.host not in ("", "0.0.0.0") else "127.0.0.1"
    ws_base = f"ws://{host}:{runtime.bound_port}"
    data_flags = f" --data-dir {settings.server.data_dir}" if settings.server.data_dir not in ("./data", "data") else ""
    me = _self_command()
    lines = [
        f"roomsvc {__version__} listening on http://{host}:{runtime.bound_port}",
        f"  public URL:      {base}",
        f"  data directory:  {settings.data_dir} (SQLite {settings.sqlite_path.name})",
        "  mint a participant token:",
        f"    {me} token{data_flags} --room demo --identity alice --api secrets",
        f"  connect a websocket to {ws_base}/v1/rooms/demo/ws with 'Authorization: Bearer <token>'",
        f"  MeshAgent SDK clients: {ws_base}/rooms/demo  (API key: {me} apikey{data_flags})",
        "  stop with Ctrl-C (SIGINT) or SIGTERM",
    ]
    print("\n".join(lines), flush=True)
    sys.stdout.flush()
