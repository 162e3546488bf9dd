"""The toolkit sidecar proxy: forwards every request to one upstream with resolved
secret headers injected, so the toolkit never holds the credential.

* Headers come from roomsvc's ``/v1/rooms/{room}/headers`` and are cached until
  ``cache_ttl`` passes (rotated secrets are picked up) or until ``refresh_margin`` before
  an OAuth credential they use expires (so long-running toolkits keep working). An upstream
  401 drops the cache, so the next request resolves again (one forced re-resolve, no loop).
* Client-supplied copies of injected headers are removed, as are hop-by-hop headers and
  any header the client names in ``Connection``.
* Redirects are never followed: a 3xx goes back to the toolkit as it is, so injected
  headers never reach another host. Bodies stream in both directions; there are timeouts.
* It only connects to the configured upstream, and for a connector's credential only when
  the upstream host is one of the connector's allowed hosts: it sends the upstream URL as
  the ``destination`` of every resolution, and the server refuses any other host (it also
  checks here, before connecting). A request path that could leave the upstream's base
  path (dot segments, encoded or double-encoded dots and slashes, backslashes) is refused
  with 400 before anything is resolved.
* It listens on loopback unless ``--allow-remote`` is given (then it logs a warning). Unless
  ``allow_insecure_loopback`` is on, upstream addresses must be public: the resolver
  vets every address it returns (so DNS rebinding cannot reach a private address).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict
from yarl import URL

from roomsvc.addresses import is_public_address
from roomsvc.clock import Clock
from roomsvc.errors import InvalidRequest, PermissionDenied, RoomsvcError
from roomsvc.transport.errors import error_body, wire_error

log = logging.getLogger("roomsvc.proxy")

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}

Fetch = Callable[[], Awaitable[list[dict[str, Any]]]]




class VettedResolver(AbstractResolver):
    """Resolves names and, unless private addresses are allowed, drops every non-public one."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        kept = [r for r in results if is_public_address(r["host"])]
        if not kept:
            raise OSError(f"{host} resolves only to loopback or private addresses; refused")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def check_upstream(url: str, *, allow_private: bool) -> URL:
    """Validate the upstream URL before starting.

    Raises:
        InvalidRequest: not an absolute http(s) URL, http without the development setting,
            or a literal loopback/private address without it.
    """
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidRequest("--upstream must be an absolute http(s) URL")
    if parsed.user or parsed.password or parsed.fragment:
        raise InvalidRequest("--upstream may not carry credentials or a fragment")
    if not allow_private:
        if parsed.scheme != "https":
            raise InvalidRequest("--upstream must be https (server.allow_insecure_loopback allows http for development)")
        try:
            literal = ipaddress.ip_address(parsed.host)
        except ValueError:
            literal = None
        if parsed.host == "localhost" or (literal is not None and not is_public_address(str(literal))):
            raise InvalidRequest(f"--upstream {parsed.host} is a loopback or private address; refused")
    return parsed


def check_listen(host: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback listen address unless the operator asked for one.

    Raises:
        InvalidRequest: ``host`` is not loopback and ``allow_remote`` is off.
    """
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # a host name might resolve to anything
    if loopback:
        return
    if not allow_remote:
        raise InvalidRequest(
            f"--listen {host} is not a loopback address: anyone who can reach the proxy can use the credential; "
            "listen on 127.0.0.1, or pass --allow-remote if that is what you want"
        )
    log.warning("the proxy listens on %s (--allow-remote): anyone who can reach it can use the credential", host)


#: how many times a path is percent-decoded when looking for hidden dot segments and slashes
MAX_DECODES = 4


def path_escapes(raw_path: str) -> bool:
    """Could this request path (raw, before the query) leave the upstream's base path?

    True for a dot segment (``.``, ``..``) and for a backslash or an encoded slash, at any
    level of percent-decoding (``%2e%2e``, ``%252e%252e``, ``%2f``, ``%5c``), and for a
    path that is still changing after :data:`MAX_DECODES` decodings.
    """
    current = raw_path
    for _ in range(MAX_DECODES + 1):
        if "\\" in current or any(segment in (".", "..") for segment in current.split("/")):
            return True
        decoded = unquote(current)
        if decoded == current:
            return False
        if decoded.count("/") != current.count("/"):
            return True  # an encoded slash would become a path separator upstream
        current = decoded
    return True


class HeaderCache:
    def __init__(self, fetch: Fetch, *, clock: Clock, cache_ttl: float, refresh_margin: float) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl = cache_ttl
        self._margin = refresh_margin
        self._headers: list[dict[str, Any]] | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()
        #: how many times headers were fetched (a figure for tests and logs)
        self.fetches = 0

    async def get(self) -> list[dict[str, Any]]:
        async with self._lock:  # one resolve at a time: concurrent requests share it
            if self._headers is None or self._clock.now() >= self._valid_until:
                headers = await self._fetch()
                self.fetches += 1
                now = self._clock.now()
                until = now + self._ttl
                for h in headers:
                    if h.get("expires_at") is not None:
                        until = min(until, float(h["expires_at"]) - self._margin)
                self._headers, self._valid_until = headers, until
            return self._headers

    def invalidate(self) -> None:
        self._headers = None


class SidecarProxy:
    def __init__(
        self, *, upstream: URL, headers: HeaderCache, allow_private: bool, connect_timeout: float, timeout: float
    ) -> None:
        self.upstream = upstream
        self._headers = headers
        self._allow_private = allow_private
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(resolver=VettedResolver(allow_private=self._allow_private))
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=False)

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def _target(self, request: web.Request) -> URL:
        base = self.upstream.path.rstrip("/")
        return self.upstream.with_path(base + request.rel_url.path, encoded=False).with_query(request.rel_url.query)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not request.raw_path.startswith("/") or path_escapes(request.raw_path.partition("?")[0]):
            # before anything is resolved: the path must stay under the upstream's base path
            refused = InvalidRequest("the request path may not contain dot segments, encoded slashes or backslashes")
            return web.json_response({"error": error_body(refused)}, status=wire_error(refused).status)
        try:
            injected = await self._headers.get()
            self._check_hosts(injected)
        except RoomsvcError as exc:
            log.warning("header resolution refused: %s", exc.name)
            return web.json_response({"error": error_body(exc)}, status=wire_error(exc).status)
        except aiohttp.ClientError as exc:
            return _error(502, "dependency_missing", f"cannot reach roomsvc to resolve headers ({type(exc).__name__})")
        names = {h["name"].lower() for h in injected}
        forwarded = _forward_headers(request.headers, drop=names)
        for h in injected:
            forwarded[h["name"]] = h["value"]
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, self._target(request), headers=forwarded,
                data=request.content if request.body_exists else None, allow_redirects=False,
            ) as upstream:
                if upstream.status == 401:
                    self._headers.invalidate()  # the next request resolves again
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        response.headers.add(key, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(65536):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except asyncio.TimeoutError:
            return _error(504, "timeout", "the upstream did not answer in time")
        except aiohttp.ClientError as exc:
            return _error(502, "dependency_missing", f"upstream request failed ({type(exc).__name__})")

    def _check_hosts(self, injected: list[dict[str, Any]]) -> None:
        host = (self.upstream.host or "").lower()
        for h in injected:
            allowed = h.get("allowed_hosts")
            if allowed is not None and host not in {a.lower() for a in allowed}:
                raise PermissionDenied(f"the credential for header {h['name']} may not be sent to {host}")


def _forward_headers(incoming: Any, *, drop: set[str]) -> CIMultiDict[str]:
    named_by_connection = {
        token.strip().lower() for value in incoming.getall("Connection", []) for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in incoming.items():
        lowered = key.lower()
        if lowered in HOP_BY_HOP or lowered in drop or lowered in named_by_connection:
            continue
        out.add(key, value)
    return out


def _error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": 1007 if status == 502 else 1009, "name": name, "message": message}}, status=status)


async def serve_proxy(proxy: SidecarProxy, host: str, port: int, stop: asyncio.Event) -> None:
    """Listen until ``stop`` is set; prints the bound address once listening."""
    runner = web.AppRunner(proxy.app(), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    print(f"roomsvc proxy listening on http://{shown}:{bound} -> {proxy.upstream}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
