"""``/oauth/start`` and ``/oauth/callback``: the browser side of roomsvc's own OAuth redirect.

``GET /oauth/start?t=...`` shows the person who asks, for which provider and scopes,
whose credential it will be and who may use it, with a Continue button; only the form's
``POST`` uses the one-time link and goes to the provider.

Both answer people, not programs: small HTML pages, never JSON, never a token. Every
answer carries ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer`` (the
callback URL holds a code and a state), and the room console's CSP (its stylesheet from
this origin, nothing inline, nothing external; see console_ui.py).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from aiohttp import web

from roomsvc.errors import RoomsvcError
from roomsvc.transport.errors import wire_error
from roomsvc.transport.http.console_ui import csp
from roomsvc.transport.http.keys import SERVICES

log = logging.getLogger("roomsvc.oauth.http")

#: the routes below (routes.py spells them out too: tests/test_docs.py reads that table)
START_PATH = "/oauth/start"
CALLBACK_PATH = "/oauth/callback"


@dataclass(frozen=True)
class OAuthLinks:
    """The domain's :class:`~roomsvc.domain.oauth.ports.Links`: this module's routes under
    the server's public URL (built by the composition root)."""

    public_url: Callable[[], str]

    def start_url(self, ticket: str) -> str:
        # a ticket is URL-safe base64: nothing to quote
        return f"{self.public_url().rstrip('/')}{START_PATH}?t={ticket}"

    def callback_url(self) -> str:
        return self.public_url().rstrip("/") + CALLBACK_PATH

_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# the room console's look (issue 16): its stylesheet, no inline style, the console's CSP
_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="/ui/static/console.css"></head>
<body class="sheet"><header class="bar"><span class="brand">roomsvc</span></header><main class="card">
"""
_PAGE = _HEAD + """<h1 class="{cls}">{title}</h1><p id="outcome">{text}</p><p class="muted">You can close this window.</p></main></body></html>
"""
_START = _HEAD.replace("{title}", "Connect {provider}") + """<h1>Connect your {provider} account</h1>
<p><b>{requester}</b> asks you to connect an account in room <b>{room}</b>.</p>
<dl class="facts"><dt>Permissions asked</dt><dd>{scopes}</dd>
<dt>The credential will belong to</dt><dd id="owner">{owner}</dd>
<dt>Who may use it</dt><dd id="usable-by">{usable_by}</dd></dl>
<form method="post" action="{action}"><input type="hidden" name="t" value="{ticket}">
<button type="submit" class="primary">Continue to {provider}</button></form>
<p class="muted">If you did not expect this, close this window: nothing happens until you continue.</p></main></body></html>
"""


def _headers(form_action: str = "'none'") -> dict[str, str]:
    # these pages open no websocket: no host in connect-src
    return {**_HEADERS, "Content-Security-Policy": csp(None, form_action=form_action)}


def _page(request: web.Request, title: str, text: str, *, status: int, ok: bool) -> web.Response:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text), cls="ok" if ok else "bad")
    return web.Response(text=body, status=status, content_type="text/html", headers=_headers())


async def start_page(request: web.Request) -> web.StreamResponse:
    """Show what a start link is for (who asks, whose credential it will be, who may use
    it) without using it: a link preview or a first look does not burn it."""
    oauth = request.app[SERVICES].oauth
    ticket = request.query.get("t")
    try:
        info = await oauth.describe_start_link(ticket)
    except RoomsvcError as exc:
        return _page(request, "This link cannot be used", exc.message, status=wire_error(exc).status, ok=False)
    body = _START.format(
        provider=html.escape(info.provider), requester=html.escape(info.requester), room=html.escape(info.room),
        scopes=html.escape(" ".join(info.scopes) or "(the provider's default)"), owner=html.escape(info.owner),
        usable_by=html.escape(", ".join(info.usable_by)), action=html.escape(request.path),
        ticket=html.escape(ticket or ""),
    )
    # the form posts here, and browsers apply form-action to the redirect that follows too
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(info.authorization_endpoint))
    return web.Response(text=body, content_type="text/html", headers=_headers(f"'self' {origin}"))


async def start(request: web.Request) -> web.StreamResponse:
    """Use a start link (the page's form): bind this browser with a cookie, then go to the provider."""
    oauth = request.app[SERVICES].oauth
    if request.content_type != "application/x-www-form-urlencoded" or (request.content_length or 0) > 4096:
        return _page(request, "This link cannot be used", "Open the sign-in link and press Continue.", status=400, ok=False)
    form = await request.post()
    ticket = form.get("t")
    try:
        begun = await oauth.open_start_link(ticket if isinstance(ticket, str) else None)
    except RoomsvcError as exc:
        return _page(request, "This link cannot be used", exc.message, status=wire_error(exc).status, ok=False)
    response = web.Response(status=302, headers={**_headers(), "Location": begun.authorization_url})
    response.set_cookie(
        begun.cookie_name, begun.binding, max_age=int(begun.max_age), path=CALLBACK_PATH,
        httponly=True, samesite="Lax", secure=not oauth.policy.insecure_ok,
    )
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    """The provider's redirect: finish the flow, then tell the person how it went."""
    oauth = request.app[SERVICES].oauth
    params = {k: v for k, v in request.query.items() if k in ("code", "state", "iss", "error")}
    try:
        result = await oauth.complete_callback(params, dict(request.cookies))
    except RoomsvcError as exc:
        log.info("OAuth callback refused: %s", exc.name)
        return _page(request, "The connection was not made", exc.message, status=wire_error(exc).status, ok=False)
    account = f" as {result.subject}" if result.subject else ""
    page = _page(
        request, "Connected",
        f"Your {result.connector} account{account} is now connected for {result.owner} in room {result.room}.",
        status=200, ok=True,
    )
    page.del_cookie(result.cookie, path=CALLBACK_PATH)
    return page
