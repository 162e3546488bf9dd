"""``/oauth/start`` and ``/oauth/callback``: the browser side of roomsvc's own OAuth redirect.

Both answer people, not programs: small HTML pages, never JSON, never a token. Every
answer carries ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer`` (the
callback URL holds a code and a state), and a CSP that allows nothing but inline style.
"""

from __future__ import annotations

import html
import logging

from aiohttp import web

from roomsvc.errors import RoomsvcError
from roomsvc.transport.errors import wire_error
from roomsvc.transport.http.keys import SERVICES

log = logging.getLogger("roomsvc.oauth.http")

_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}}
h1{{font-size:1.4em}} .ok{{color:#0a6b2d}} .bad{{color:#a4161a}}</style></head>
<body><h1 class="{cls}">{title}</h1><p>{text}</p><p>You can close this window.</p></body></html>
"""


def _page(title: str, text: str, *, status: int, ok: bool) -> web.Response:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text), cls="ok" if ok else "bad")
    return web.Response(text=body, status=status, content_type="text/html", headers=_HEADERS)


async def start(request: web.Request) -> web.StreamResponse:
    """Open a start link: bind this browser with a cookie, then go to the provider."""
    oauth = request.app[SERVICES].oauth
    if oauth is None:
        return _page("OAuth is not available", "This server has no OAuth service.", status=404, ok=False)
    try:
        begun = await oauth.open_start_link(request.query.get("t"))
    except RoomsvcError as exc:
        return _page("This link cannot be used", exc.message, status=wire_error(exc).status, ok=False)
    response = web.Response(status=302, headers={**_HEADERS, "Location": begun.authorization_url})
    response.set_cookie(
        begun.cookie_name, begun.binding, max_age=int(begun.max_age), path="/oauth/callback",
        httponly=True, samesite="Lax", secure=not oauth.policy.insecure_ok,
    )
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    """The provider's redirect: finish the flow, then tell the person how it went."""
    oauth = request.app[SERVICES].oauth
    if oauth is None:
        return _page("OAuth is not available", "This server has no OAuth service.", status=404, ok=False)
    params = {k: v for k, v in request.query.items() if k in ("code", "state", "iss", "error")}
    try:
        result = await oauth.complete_callback(params, dict(request.cookies))
    except RoomsvcError as exc:
        log.info("OAuth callback refused: %s", exc.name)
        return _page("The connection was not made", exc.message, status=wire_error(exc).status, ok=False)
    account = f" as {result.subject}" if result.subject else ""
    page = _page(
        "Connected",
        f"Your {result.connector} account{account} is now connected for {result.owner} in room {result.room}.",
        status=200, ok=True,
    )
    page.del_cookie(result.cookie, path="/oauth/callback")
    return page
