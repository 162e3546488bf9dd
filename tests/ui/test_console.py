"""The room console in real headless chromium: two people's pages and an agent in one room.

One server (with the real OpenID provider) and one browser for the module; each person is
a browser context of their own (their own session storage). The agent is a native
websocket client. A screenshot is kept at each step (see conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from tests.oauth.conftest import OAuthEnv, _token_with_api
from tests.support.native_client import NativeClient, ResponseError
from tests.support.waiting import until

ROOM = "console"
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold?</b>'
CANARY_SECRET = "canary-db-password-7f3a"


def token(env: OAuthEnv, identity: str, *, role: str = "user", room: str = ROOM, api: dict[str, Any] | None = None) -> str:
    return _token_with_api(env.server, identity, room, role, {"secrets": {}} if api is None else api)


class Room:
    """The module's cast: alice's and bob's pages and an agent, all in ROOM."""

    def __init__(self, env: OAuthEnv) -> None:
        self.env = env
        self.alice, self.bob, self.agent_name = env.ids("alice", "bob", "agent")
        self.pages: dict[str, Any] = {}
        self.contexts: list[Any] = []
        self.agent: NativeClient | None = None
        #: script errors and CSP violations seen on any page (each test checks it stays empty)
        self.errors: list[str] = []
        #: the tokens given to pages, and every URL any page requested or opened a websocket to
        self.tokens: dict[str, str] = {}
        self.requested: list[str] = []

    def url(self, identity: str | None = None) -> str:
        base = f"{self.env.server.url}/ui/rooms/{ROOM}"
        if identity is None:
            return base
        self.tokens[identity] = token(self.env, identity)
        return f"{base}#token={self.tokens[identity]}"

    async def open(self, chromium: Any, identity: str) -> Any:
        context = await chromium.new_context(viewport={"width": 1200, "height": 900})
        # nothing but the two loopback servers (roomsvc and the provider) may be reached
        await context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/]).*"), lambda route: route.abort("blockedbyclient"))
        self.contexts.append(context)
        page = await context.new_page()
        self.watch(page, identity)
        await page.goto(self.url(identity))
        await page.wait_for_selector("#conn[data-state=connected]")
        self.pages[identity] = page
        return page

    def watch(self, page: Any, who: str) -> None:
        page.on("request", lambda r: self.requested.append(r.url))
        page.on("websocket", lambda ws: self.requested.append(ws.url))
        page.on("pageerror", lambda exc: self.errors.append(f"{who}: script error {exc}"))
        page.on("console", lambda m: self.errors.append(f"{who}: {m.text}")
                if "Content Security Policy" in m.text or m.type == "error" else None)

    async def close(self) -> None:
        if self.agent is not None:
            await self.agent.close()
        for context in self.contexts:
            await context.close()


@pytest.fixture(scope="module")
async def room(oauth_env: OAuthEnv, chromium: Any) -> AsyncIterator[Room]:
    cast = Room(oauth_env)
    try:
        yield cast
    finally:
        await cast.close()


@pytest.fixture(autouse=True)
def no_page_errors(request: pytest.FixtureRequest) -> Any:
    yield
    if "room" in request.fixturenames:
        cast = request.getfixturevalue("room")
        assert not cast.errors, cast.errors
        # no page ever put a token in a URL (the fragment is never requested)
        assert not any(given in url for given in cast.tokens.values() for url in cast.requested)
        assert not any("token=" in url or ("/ws" in url and "?" in url) for url in cast.requested), cast.requested


async def seen(get: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], what: str = "the page to show it") -> None:
    """Wait until what ``get()`` reads from a page satisfies ``ok`` (a failure bound, not a timing)."""
    last: list[Any] = []

    async def check() -> bool:
        last[:] = [await get()]
        return ok(last[0])

    try:
        await until(check, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last!r}") from None


async def participants(client: NativeClient) -> dict[str, str]:
    """identity -> participant id, as the agent sees the room now."""
    listed = await client.request("participants.list", {})
    return {p["identity"]: p["id"] for p in listed["participants"]}


async def people_on(page: Any) -> set[str]:
    return set(await page.locator("#people li").evaluate_all("els => els.map(e => e.dataset.identity)"))


# -- the HTTP side: headers on every UI answer --------------------------------------------------------


async def test_every_ui_response_carries_a_strict_csp(oauth_env: OAuthEnv) -> None:
    base = oauth_env.server.url
    paths = [f"/ui/rooms/{ROOM}", "/ui/static/console.js", "/ui/static/console.css", "/ui/static/console.html",
             "/ui/static/nothing.js", "/ui/static/..%2fconsole_ui.py", "/ui/rooms/not%20a%20room",
             "/ui/", "/ui/rooms/console/extra", "/ui/static/%2e%2e%2fconsole_ui.py",
             "/oauth/start?t=not-a-ticket", "/oauth/callback?state=nope&code=x"]
    async with aiohttp.ClientSession() as http:
        for path in paths:
            async with http.get(base + path, allow_redirects=False) as r:
                policy = r.headers.get("Content-Security-Policy", "")
                assert "script-src 'self'" in policy and "style-src 'self'" in policy, (path, policy)
                assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, (path, policy)
                assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "*" not in policy, (path, policy)
                assert r.headers["X-Content-Type-Options"] == "nosniff", path
                assert r.headers["Referrer-Policy"] == "no-referrer", path
                assert "Cache-Control" in r.headers, path
                text = await r.text()
                if path.startswith("/ui/"):
                    assert r.status == (200 if path in paths[:4] else 404), (path, r.status)
            if r.content_type == "text/html":
                # nothing inline for the policy to allow: no script body, no style element or attribute
                assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
                assert "<style" not in text and " style=" not in text, path
        async with http.get(f"{base}/ui/static/secret.txt") as r:
            assert r.status == 404
        for method in ("POST", "PUT", "DELETE"):  # other methods too
            async with http.request(method, f"{base}/ui/rooms/{ROOM}") as r:
                assert r.status == 405 and "script-src 'self'" in r.headers["Content-Security-Policy"], method
        # a forged Host cannot add directives to the policy
        async with http.get(f"{base}/ui/rooms/{ROOM}", headers={"Host": "x; script-src *"}) as r:
            assert "script-src *" not in r.headers["Content-Security-Policy"]
            assert "script-src 'self';" in r.headers["Content-Security-Policy"]


async def test_a_bad_token_shows_the_login_form_with_the_reason(room: Room, chromium: Any, shots: Any) -> None:
    context = await chromium.new_context(viewport={"width": 420, "height": 800})  # a narrow window
    try:
        page = await context.new_page()
        await page.goto(f"{room.env.server.url}/ui/rooms/{ROOM}#token=not.a.token")
        await page.wait_for_selector("#login:not([hidden])")
        await seen(lambda: _text(page, "#login-error"), lambda t: "not valid" in t)
        assert "#" not in page.url and "token" not in page.url  # the fragment is gone from the address bar
        await shots.take(page, "login-bad-token")
    finally:
        await context.close()


# -- two people and an agent ---------------------------------------------------------------------------


async def test_two_pages_and_an_agent_see_each_other_and_exchange_messages(room: Room, chromium: Any, shots: Any) -> None:
    env = room.env
    room.agent = await NativeClient.connect(env.server.ws_url(ROOM), token(env, room.agent_name, role="agent"))
    alice = await room.open(chromium, room.alice)
    # the token left the address bar but stays in this tab's session storage
    assert "#" not in alice.url and "token" not in alice.url
    assert await alice.evaluate(f"sessionStorage.getItem('roomsvc.console.token.{ROOM}')")
    bob = await room.open(chromium, room.bob)
    everyone = {room.alice, room.bob, room.agent_name}
    for page in (alice, bob):
        await seen(lambda p=page: people_on(p), lambda seen: seen == everyone)
    assert await alice.locator(f"#people li[data-identity='{room.agent_name}'] .role").text_content() == "agent"

    # alice to everyone: bob's page and the agent get it
    await alice.fill("#send-text", "hello bob")
    await alice.press("#send-text", "Enter")  # keyboard only
    await bob.wait_for_selector("#messages .msg >> text=hello bob")
    pushed = await room.agent.next_event("message", timeout=10)
    assert pushed["data"]["body"] == {"text": "hello bob"} and pushed["data"]["from"]["identity"] == room.alice

    # bob answers alice alone: the agent does not get it
    await bob.select_option("#send-to", label=f"{room.alice} (user)")
    await bob.fill("#send-text", "hi alice, just you")
    await bob.click("#send-form button[type=submit]")
    await alice.wait_for_selector("#messages .msg >> text=hi alice, just you")
    assert "you" in (await alice.locator("#messages .msg").last.locator(".who").text_content() or "")

    # the agent talks to the room, then leaves and comes back: presence follows on both pages
    await room.agent.request("message.broadcast", {"message_type": "chat", "body": {"text": "agent here"}})
    await bob.wait_for_selector("#messages .msg >> text=agent here")
    await room.agent.close()
    for page in (alice, bob):
        await seen(lambda p=page: people_on(p), lambda seen: seen == {room.alice, room.bob})
    room.agent = await NativeClient.connect(env.server.ws_url(ROOM), token(env, room.agent_name, role="agent"))
    for page in (alice, bob):
        await seen(lambda p=page: people_on(p), lambda seen: seen == everyone)
    await alice.wait_for_selector("#messages .msg >> text=agent here")
    # a call to a person's page is answered at once with an error, not left to time out
    with pytest.raises(ResponseError) as refused:
        await room.agent.request("call", {"to": (await participants(room.agent))[room.alice], "method": "ask",
                                          "body": {}, "timeout": 20})
    assert refused.value.name != "timeout" and "console" in str(refused.value.message), refused.value.error
    # the tokens went in the auth message and Authorization headers, never in a URL
    assert any(u.endswith(f"/v1/rooms/{ROOM}/ws") for u in room.requested), room.requested
    assert any("/oauth/credentials" in u for u in room.requested), room.requested
    await shots.take(alice, "presence-and-messages-alice")
    await shots.take(bob, "presence-and-messages-bob")


async def test_a_burst_of_joins_and_leaves_coalesced_on_the_wire_is_shown_right(room: Room, chromium: Any) -> None:
    """Joins and leaves within one coalescing window reach the page as one ``participants.changed``
    frame (docs/protocol.md): the page applies it like the single announcements."""
    env = room.env
    alice = room.pages.get(room.alice) or await room.open(chromium, room.alice)
    before = await people_on(alice)
    burst = [f"burst-{i}" for i in range(6)]
    clients = await asyncio.gather(*(
        NativeClient.connect(env.server.ws_url(ROOM), token(env, name, role="agent")) for name in burst))
    try:
        await seen(lambda: people_on(alice), lambda now: now == before | set(burst))
        await asyncio.gather(*(c.close() for c in clients[:3]))
        await seen(lambda: people_on(alice), lambda now: now == before | set(burst[3:]))
    finally:
        await asyncio.gather(*(c.close() for c in clients[3:]))
    await seen(lambda: people_on(alice), lambda now: now == before)
    assert await people_on(alice) == before and not set(burst) & await people_on(alice)


async def test_a_hostile_message_is_shown_as_text_and_nothing_runs(room: Room, shots: Any) -> None:
    assert room.agent is not None
    alice = room.pages[room.alice]
    await room.agent.request("message.send", {"to": (await participants(room.agent))[room.alice],
                                              "message_type": "chat", "body": {"text": HOSTILE}})
    shown = alice.locator("#messages .msg .text").last
    await seen(lambda: shown.text_content(), lambda t: t == HOSTILE)
    await asyncio.sleep(0.3)  # an onerror would have fired by now
    assert await alice.evaluate("window.__pwned") is None
    assert await alice.locator("#messages img, #messages script, #messages b").count() == 0
    # a body that is not text is shown as JSON, still as text
    await room.agent.request("message.broadcast", {"message_type": "x.y", "body": {"html": "<svg onload=alert(1)>"}})
    await seen(lambda: alice.locator("#messages .msg .text").last.text_content(), lambda t: "<svg onload" in t)
    assert await alice.locator("#messages svg").count() == 0
    await shots.take(alice, "hostile-message-as-text")


async def test_the_browser_enforces_the_policy_even_on_injected_markup(room: Room) -> None:
    """Were a bug to put markup in the page, the CSP still stops inline script and style."""
    alice = room.pages[room.alice]
    violations = await alice.evaluate("""() => new Promise((resolve) => {
        const seen = [];
        document.addEventListener('securitypolicyviolation', (e) => seen.push(e.violatedDirective));
        const s = document.createElement('script');
        s.textContent = 'window.__inline = 1';
        document.body.append(s);
        const d = document.createElement('div');
        d.innerHTML = '<img src="data:," onerror="window.__inline = 2"><span style="color:red">x</span>';
        document.body.append(d);
        setTimeout(() => { d.remove(); resolve(seen); }, 300);
    })""")
    assert await alice.evaluate("window.__inline") is None
    assert any(v.startswith("script-src") for v in violations), violations
    assert any(v.startswith("style-src") for v in violations) or any(v.startswith("img-src") for v in violations), violations
    # these violations were provoked here: the page's own were checked before and are after
    room.errors[:] = [e for e in room.errors if "Content Security Policy" not in e]


# -- requests addressed to a person ----------------------------------------------------------------------


async def test_an_oauth_request_is_authorized_from_the_console(room: Room, shots: Any) -> None:
    assert room.agent is not None
    alice = room.pages[room.alice]
    ask = asyncio.get_running_loop().create_task(room.agent.request("secrets.request_oauth_token", {
        "connector": "oidc", "from_participant_id": (await participants(room.agent))[room.alice], "timeout": 60,
    }, timeout=70))
    card = alice.locator("#requests .request[data-kind=oauth]").first
    await card.wait_for()
    assert room.agent_name in (await card.locator("h3").text_content() or "")
    assert "oidc" in (await card.locator("dd.provider").text_content() or "")
    assert "openid" in (await card.locator("dd.scopes").text_content() or "")
    assert await card.locator("dd.owner").text_content() == room.alice
    assert set((await card.locator("dd.usable-by").text_content() or "").split(", ")) == {room.alice, room.agent_name}
    await shots.take(alice, "oauth-request")

    async with alice.context.expect_page() as opened:
        await card.locator("a.authorize").click()
    popup = await opened.value
    room.watch(popup, "the consent window")
    await popup.wait_for_load_state()
    # roomsvc's start page, in the console's look, says whose credential it will be
    assert await popup.locator("#owner").text_content() == room.alice
    await shots.take(popup, "oauth-start-page")
    await popup.click("button[type=submit]")
    await popup.wait_for_selector("input[name=prompt][value=login]", state="attached")
    await popup.fill("input[name=login]", f"{room.alice}@example.test")
    await popup.fill("input[name=password]", "any")
    await popup.click("button[type=submit]")
    await popup.wait_for_selector("input[name=prompt][value=consent]", state="attached")
    await popup.click("button[type=submit]")
    await popup.wait_for_url("**/oauth/callback?**")
    await popup.wait_for_selector("h1.ok")
    await shots.take(popup, "oauth-callback-page")
    await popup.close()

    grant = await ask
    assert grant["access_token"] and grant["credential"]["owner"] == room.alice
    await seen(lambda: card.get_attribute("data-outcome"), lambda o: o == "completed")
    listed = alice.locator("#credentials li.credential[data-id=oidc]")
    await listed.wait_for()
    assert await listed.get_attribute("data-status") == "active"
    assert await listed.locator("dd.account").text_content() == f"{room.alice}@example.test"
    assert room.agent_name in (await listed.locator("dd.usable-by").text_content() or "")
    assert grant["access_token"] not in (await alice.content())
    # what the page read: metadata only; bob's listing does not show alice's credential
    from tests.oauth.flows import read_credential

    stored = read_credential(room.env.server, ROOM, room.alice)
    async with aiohttp.ClientSession() as http:
        for who in (room.alice, room.bob):
            async with http.get(f"{room.env.server.url}/v1/rooms/{ROOM}/oauth/credentials",
                                headers={"Authorization": f"Bearer {token(room.env, who)}"}) as r:
                text = await r.text()
                listed_ids = [c["id"] for c in (await r.json())["credentials"]]
            assert stored["access_token"] not in text and stored["refresh_token"] not in text
            assert "access_token" not in text and "refresh_token" not in text and "client_secret" not in text
            assert listed_ids == (["oidc"] if who == room.alice else [])
    await shots.take(alice, "oauth-credential-active")
    room.access_token = grant["access_token"]  # type: ignore[attr-defined]


async def test_a_plain_secret_request_is_provided_from_the_console(room: Room, shots: Any) -> None:
    assert room.agent is not None
    alice = room.pages[room.alice]
    ask = asyncio.get_running_loop().create_task(room.agent.request("secrets.request_secret", {
        "url": "secret://db/password", "type": "text/plain", "timeout": 60,
        "from_participant_id": (await participants(room.agent))[room.alice],
    }, timeout=70))
    card = alice.locator("#requests .request[data-kind=secret]").first
    await card.wait_for()
    assert await card.locator("dd.url").text_content() == "secret://db/password"
    await card.locator("input.secret-value").fill(CANARY_SECRET)
    assert await card.locator("input.secret-value").get_attribute("type") == "password"
    await shots.take(alice, "secret-request")
    await card.locator("input.secret-value").press("Enter")
    answer = await ask
    assert base64.b64decode(answer["value"]).decode() == CANARY_SECRET
    await seen(lambda: card.get_attribute("data-outcome"), lambda o: o == "provided")
    assert CANARY_SECRET not in await alice.content()
    await shots.take(alice, "secret-provided")


async def test_the_console_lists_this_identitys_audit_lines(room: Room, shots: Any) -> None:
    alice = room.pages[room.alice]
    await alice.click("#audit-refresh")
    rows = alice.locator("#audit tbody tr")
    await seen(lambda: rows.all_text_contents(), lambda texts: any("oauth" in t for t in texts))
    texts = " ".join(await rows.all_text_contents())
    assert room.agent_name in texts  # what the agent did with alice's credential
    assert CANARY_SECRET not in texts and getattr(room, "access_token", "-") not in texts
    await alice.set_viewport_size({"width": 420, "height": 900})
    await shots.take(alice, "narrow-window")
    await alice.set_viewport_size({"width": 1200, "height": 900})


async def test_a_credential_that_needs_reauth_offers_reconnect(room: Room, shots: Any) -> None:
    from tests.oauth.flows import rewrite_credential

    alice = room.pages[room.alice]
    rewrite_credential(room.env.server, ROOM, room.alice, lambda v: v.update(status="reauth_required"))
    await alice.reload()
    await alice.wait_for_selector("#conn[data-state=connected]")  # the token survived the reload (session storage)
    listed = alice.locator("#credentials li.credential[data-id=oidc]")
    await seen(lambda: listed.get_attribute("data-status"), lambda s: s == "reauth_required")
    await listed.locator("button.reconnect").click()
    # reconnecting asks alice again: a consent request for her own page
    card = alice.locator("#requests .request[data-kind=oauth]").first
    await card.wait_for()
    assert await card.locator("dd.owner").text_content() == room.alice
    await shots.take(alice, "reauth-reconnect")
    await card.locator("button.reject").click()
    await seen(lambda: card.get_attribute("data-outcome"), lambda o: o == "rejected")


async def _text(page: Any, selector: str) -> str:
    return str(await page.locator(selector).text_content() or "")


async def test_the_page_shows_a_lost_connection_and_reconnects_with_backoff(room: Room, chromium: Any, shots: Any) -> None:
    """carol's socket goes through a Playwright websocket route standing in for the network:
    it is cut, the next attempt is refused, the one after goes through."""
    carol, = room.env.ids("carol")
    alice = room.pages[room.alice]
    context = await chromium.new_context(viewport={"width": 1200, "height": 900})
    room.contexts.append(context)
    page = await context.new_page()
    room.watch(page, carol)
    links: list[tuple[Any, Any]] = []
    refuse = [0]

    async def network(ws: Any) -> None:
        if refuse[0]:
            refuse[0] -= 1
            await ws.close(code=1001, reason="refused by the test's network")
            return
        links.append((ws, ws.connect_to_server()))

    await page.route_web_socket(re.compile(r".*/ws$"), network)
    await page.goto(room.url(carol))
    await page.wait_for_selector("#conn[data-state=connected]")
    await seen(lambda: people_on(alice), lambda people: carol in people, "carol on alice's page")

    # a secret request waiting on the page when the connection goes
    assert room.agent is not None
    ask = asyncio.get_running_loop().create_task(room.agent.request("secrets.request_secret", {
        "url": "secret://lost", "type": "text/plain", "timeout": 60,
        "from_participant_id": (await participants(room.agent))[carol]}, timeout=70))
    card = page.locator("#requests .request[data-kind=secret]").first
    await card.wait_for()

    refuse[0] = 1
    browser_side, server_side = links[-1]
    await server_side.close(code=1000)  # a page may only close with 1000 or 3000-4999
    await browser_side.close(code=1001, reason="the test cut the network")
    delays = []
    for _ in range(2):  # the cut, then the refused attempt: each waits longer than the one before
        await seen(lambda: page.get_attribute("#conn", "data-retry-ms"), lambda v: v is not None and v not in delays)
        delays.append(await page.get_attribute("#conn", "data-retry-ms"))
        if len(delays) == 1:
            assert "retrying in" in str(await page.text_content("#conn"))
            await shots.take(page, "connection-lost")
    assert int(delays[1]) > int(delays[0]), delays
    await seen(lambda: page.get_attribute("#conn", "data-state"), lambda s: s == "connected", "carol reconnected")
    # the cut connection left the room and the new one joined: one carol on alice's page
    await seen(lambda: alice.locator(f"#people li[data-identity='{carol}']").count(), lambda n: n == 1, "one carol")
    # the request ended with the connection it was pushed to; the page says so
    with pytest.raises(ResponseError):
        await ask
    assert await card.get_attribute("data-outcome") == "lost"
    assert await card.locator("input.secret-value").count() == 0


async def test_a_credential_that_does_not_decrypt_is_listed_as_unreadable(room: Room) -> None:
    """One tampered row does not take the whole listing (or the page) down with it."""
    from tests.oauth.flows import _credential_row

    db, _, _, row = _credential_row(room.env.server, ROOM, room.alice, "oidc", writable=True)
    try:
        with db:
            db.execute("UPDATE room_secret_versions SET ciphertext = ? WHERE pk = ?", (b"\0" * len(bytes(row[12])), row[13]))
    finally:
        db.close()
    alice = room.pages[room.alice]
    await alice.reload()
    await alice.wait_for_selector("#conn[data-state=connected]")
    listed = alice.locator("#credentials li.credential[data-id=oidc]")
    await seen(lambda: listed.get_attribute("data-status"), lambda s: s == "unreadable")
    assert "Could not load" not in await _text(alice, "#credentials-state")
