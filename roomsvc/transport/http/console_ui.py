"""The room console: ``/ui/rooms/{room}`` and its static files under ``/ui/static/``.

The page is plain HTML with one stylesheet and one script, all served from the package
(no build step, no third-party host). Every answer from here - the page, the files and
the 404s - carries the headers of :func:`ui_headers`: a Content-Security-Policy that
allows scripts, styles and images from this origin only (nothing inline), websockets
to this host only, no framing, no forms, no base URL; plus ``nosniff`` and
``Referrer-Policy: no-referrer``. The page itself holds no data (the token arrives in the
URL fragment, which browsers never send): it may be cached briefly, never shared.
See docs/console.md.
"""

from __future__ import annotations

import re
from importlib import resources

from aiohttp import web

from roomsvc.errors import RoomsvcError
from roomsvc.ids import parse_room

#: files served under /ui/static/{name}, with their types (nothing else is)
STATIC = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "console.html": "text/html",
}
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def csp(host: str | None, *, form_action: str = "'none'") -> str:
    """The policy of every console page (and of the OAuth start and callback pages).

    ``host`` is the request's Host; it is put into ``connect-src`` (for the websocket)
    only when it is a plain host[:port], so a forged Host cannot add directives."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'{sockets}; form-action {form_action}; base-uri 'none'; frame-ancestors 'none'"
    )


def ui_headers(request: web.Request, *, cache: str = "no-store") -> dict[str, str]:
    return {
        "Content-Security-Policy": csp(request.host),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": cache,
    }


def _file(name: str) -> bytes:
    return resources.files("roomsvc.transport.http").joinpath("static", name).read_bytes()


def _not_found(request: web.Request, what: str) -> web.Response:
    return web.Response(text=f"{what}\n", status=404, content_type="text/plain", headers=ui_headers(request))


async def console_page(request: web.Request) -> web.StreamResponse:
    """``GET /ui/rooms/{room}``: the same page for every room (the script reads the room
    from the path); a name that is not a room name is a 404."""
    try:
        parse_room(request.match_info["room"])
    except RoomsvcError:
        return _not_found(request, "not a room name")
    return web.Response(body=_file("console.html"), content_type="text/html", charset="utf-8",
                        headers=ui_headers(request, cache="no-cache"))


async def static_file(request: web.Request) -> web.StreamResponse:
    """``GET /ui/static/{name}``: one of :data:`STATIC`, nothing else (no paths)."""
    name = request.match_info["name"]
    if name not in STATIC:
        return _not_found(request, "no such file")
    return web.Response(body=_file(name), content_type=STATIC[name], charset="utf-8",
                        headers=ui_headers(request, cache="no-cache"))


async def anything_else(request: web.Request) -> web.StreamResponse:
    """Every other request under ``/ui/`` (another path, another method): a 404 or 405
    with the same headers, so no answer from here goes without the policy."""
    if request.method in ("GET", "HEAD"):
        return _not_found(request, "nothing here")
    return web.Response(text="method not allowed\n", status=405, content_type="text/plain",
                        headers={**ui_headers(request), "Allow": "GET, HEAD"})
