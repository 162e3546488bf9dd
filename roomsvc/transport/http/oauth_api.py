"""``/oauth/start`` and ``/oauth/callback``: the browser side of roomsvc's own OAuth redirect.

``GET /oauth/start?t=...`` shows the person who asks, for which provider and scopes,
whose credential it will be and who may use it, with a Continue button; only the form's
``POST`` uses the one-time link and goes to the provider.

Both answer people, not programs: small HTML pages, never JSON, never a token. Every
answer carries ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer`` (the
callback URL holds a code and a state), and a CSP that allows nothing but inline style.
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
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}}
h1{{font-size:1.4em}} .ok{{color:#0a6b2d}} .bad{{color:#a4161a}}</style></head>
<body><h1 class="{cls}">{title}</h1><p>{text}</p><p>You can close this window.</p></body></html>
"""
_START = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Connect {provider}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}}
h1{{font-size:1.4em}} dt{{font-weight:600}} dd{{margin:0 0 .6em 0}}
button{{font:inherit;padding:.5em 1.2em;border-radius:4px;border:1px solid #0a6b2d;background:#0a6b2d;color:#fff}}</style>
</head><body><h1>Connect your {provider} account</h1>
<p><b>{requester}</b> asks you to connect an account in room <b>{room}</b>.</p>
<dl><dt>Permissions asked</dt><dd>{scopes}</dd>
<dt>The credential will belong to</dt><dd id="owner">{owner}</dd>
<dt>Who may use it</dt><dd id="usable-by">{usable_by}</dd></dl>
<form method="post" action="{action}"><input type="hidden" name="t" value="{ticket}">
<button type="submit">Continue to {provider}</button></form>
<p>If you did not expect this, close this window: nothing happens until you continue.</p></body></html>
"""


def _page(title: str, text: str, *, status: int, ok: bool) -> web.Response:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text), cls="ok" if ok else "bad")
    return web.Response(text=body, status=status, content_type="text/html", headers=_HEADERS)


async def start_page(request: web.Request) -> web.StreamResponse:
    """Show what a start link is for (who asks, whose credential it will be, who may use
    it) without using it: a link preview or a first look does not burn it."""
    oauth = request.app[SERVICES].oauth
    ticket = request.query.get("t")
    try:
        info = await oauth.describe_start_link(ticket)
    except RoomsvcError as exc:
        return _page("This link cannot be used", exc.message, status=wire_error(exc).status, ok=False)
    body = _START.format(
        provider=html.escape(info.provider), requester=html.escape(info.requester), room=html.escape(info.room),
        scopes=html.escape(" ".join(info.scopes) or "(the provider's default)"), owner=html.escape(info.owner),
        usable_by=html.escape(", ".join(info.usable_by)), action=html.escape(request.path),
        ticket=html.escape(ticket or ""),
    )
    # the form posts here, and browsers apply form-action to the redirect that follows too
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(info.authorization_endpoint))
    csp = _HEADERS["Content-Security-Policy"].replace("form-action 'none'", f"form-action 'self' {origin}")
    return web.Response(text=body, content_type="text/html", headers={**_HEADERS, "Content-Security-Policy": csp})


async def start(request: web.Request) -> web.StreamResponse:
    """Use a start link (the page's form): bind this browser with a cookie, then go to the provider."""
    oauth = request.app[SERVICES].oauth
    if request.content_type != "application/x-www-form-urlencoded" or (request.content_length or 0) > 4096:
        return _page("This link cannot be used", "Open the sign-in link and press Continue.", status=400, ok=False)
    form = await request.post()
    ticket = form.get("t")
    try:
        begun = await oauth.open_start_link(ticket if isinstance(ticket, str) else None)
    except RoomsvcError as exc:
        return _page("This link cannot be used", exc.message, status=wire_error(exc).status, ok=False)
    response = web.Response(status=302, headers={**_HEADERS, "Location": begun.authorization_url})
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
        return _page("The connection was not made", exc.message, status=wire_error(exc).status, ok=False)
    account = f" as {result.subject}" if result.subject else ""
    page = _page(
        "Connected",
        f"Your {result.connector} account{account} is now connected for {result.owner} in room {result.room}.",
        status=200, ok=True,
    )
    page.del_cookie(result.cookie, path=CALLBACK_PATH)
    return page
