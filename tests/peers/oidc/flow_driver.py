"""Drive oidc-provider's built-in (devInteractions) login and consent pages with aiohttp.

Only aiohttp and the stdlib. The session must keep cookies for the IP host 127.0.0.1:
``aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))``.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp

_REDIRECTS = {301, 302, 303, 307, 308}


class _Forms(HTMLParser):
    """Collects each <form>'s action and its named <input> values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "inputs": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["inputs"][a["name"]] = a.get("value") or ""


def _same_endpoint(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.netloc, x.path) == (y.scheme, y.netloc, y.path)


async def drive_consent(session: aiohttp.ClientSession, authorize_url: str, login: str) -> str:
    """Run the authorization request through login and consent.

    Returns the final redirect URL (pointing at the client's redirect_uri, carrying
    ``code``, ``state``, ``iss`` -- or ``error``), without requesting it. Pages already
    satisfied by the session (a logged-in user, a granted consent) are skipped by the
    provider and so are skipped here too. Raises RuntimeError on an error page.
    """
    redirect_uri = parse_qs(urlsplit(authorize_url).query).get("redirect_uri", [None])[0]
    op = urlsplit(authorize_url)

    def is_final(location: str) -> bool:
        if redirect_uri:
            return _same_endpoint(location, redirect_uri)
        return (urlsplit(location).scheme, urlsplit(location).netloc) != (op.scheme, op.netloc)

    method, url, data = "GET", authorize_url, None
    for _ in range(20):
        async with session.request(method, url, data=data, allow_redirects=False) as resp:
            if resp.status in _REDIRECTS:
                location = urljoin(url, resp.headers["Location"])
                if is_final(location):
                    return location
                method, url, data = "GET", location, None
                continue
            body = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"{method} {url} -> {resp.status}: {body[:2000]}")
        parser = _Forms()
        parser.feed(body)
        form = next((f for f in parser.forms if "prompt" in f["inputs"]), None)
        if form is None:
            raise RuntimeError(f"no login/consent form at {url}: {body[:2000]}")
        prompt = form["inputs"]["prompt"]
        if prompt == "login":
            data = {"prompt": "login", "login": login, "password": "any"}
        elif prompt == "consent":
            data = {"prompt": "consent"}
        else:
            raise RuntimeError(f"unexpected prompt {prompt!r} at {url}")
        method, url = "POST", urljoin(url, form["action"])
    raise RuntimeError("too many steps without reaching the redirect_uri")
