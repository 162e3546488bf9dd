"""Steps of an OAuth consent as a person's browser (aiohttp with a cookie jar) takes them."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from tests.peers.oidc.flow_driver import drive_consent
from tests.support.native_client import NativeClient, ResponseError


async def ask(agent: NativeClient, person: NativeClient, *, connector: str | None = "oidc", timeout: float = 30,
              **extra: Any) -> tuple[asyncio.Task[dict[str, Any]], dict[str, Any]]:
    """The agent asks the person for a token; returns the pending request and the person's push."""
    data = {"from_participant_id": person.participant_id, "timeout": timeout, **extra}
    if connector:
        data["connector"] = connector
    task = asyncio.get_running_loop().create_task(agent.request("secrets.request_oauth_token", data, timeout=timeout + 5))
    push = await person.next_event("secrets.request_oauth_token", timeout=10)
    return task, push["data"]


async def start_page(browser: aiohttp.ClientSession, start_url: str) -> str:
    """The start link's page (what the person reads before continuing)."""
    async with browser.get(start_url, allow_redirects=False) as r:
        assert r.status == 200, (r.status, await r.text())
        assert r.headers["Referrer-Policy"] == "no-referrer" and r.headers["Cache-Control"] == "no-store"
        return await r.text()


async def open_link(browser: aiohttp.ClientSession, start_url: str) -> str:
    """Open roomsvc's start link and press Continue; returns the provider URL it redirects to."""
    page = await start_page(browser, start_url)
    ticket = re.search(r'name="t" value="([^"]*)"', page)
    assert ticket, page
    async with browser.post(start_url.split("?")[0], data={"t": html.unescape(ticket.group(1))}, allow_redirects=False) as r:
        assert r.status == 302, (r.status, await r.text())
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-store"
        return r.headers["Location"]


async def consent(browser: aiohttp.ClientSession, authorize_url: str, login: str) -> str:
    """Log in and consent at the provider; returns the callback URL (not yet requested)."""
    return await drive_consent(browser, authorize_url, login=login)


async def finish(browser: aiohttp.ClientSession, callback_url: str) -> tuple[int, str]:
    async with browser.get(callback_url, allow_redirects=False) as r:
        return r.status, await r.text()


async def run_flow(browser: aiohttp.ClientSession, agent: NativeClient, person: NativeClient, login: str,
                   **extra: Any) -> tuple[dict[str, Any], str]:
    """The whole consent: returns the agent's answer and the page the person saw."""
    task, push = await ask(agent, person, **extra)
    callback = await consent(browser, await open_link(browser, push["start_url"]), login)
    status, page = await finish(browser, callback)
    assert status == 200, page
    return await task, page


def with_query(url: str, **changes: str | None) -> str:
    """The URL with query parameters replaced (None removes one)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in changes]
    query += [(k, v) for k, v in changes.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


async def stored(client: NativeClient, secret_id: str = "oidc") -> bool:
    return bool((await client.request("secrets.exists", {"id": secret_id}))["exists"])


async def error_of(coro: Any) -> str:
    """The error name a request ends with."""
    try:
        await coro
    except ResponseError as exc:
        return str(exc.name)
    raise AssertionError("the request succeeded")


def _credential_row(server: Any, room: str, owner: str, secret_id: str, *, writable: bool = False) -> tuple[Any, Any, Any, Any]:
    """White box: open the server's database and keyring (with its master key); return
    (connection, cipher, record, row) for the current version of one credential."""
    import base64 as b64
    import sqlite3

    from roomsvc.crypto.envelope import EnvelopeCipher, MasterKey
    from roomsvc.storage.sqlite.store import _secret_record

    data = server.data_dir
    master = MasterKey(b64.b64decode((data / "master.key").read_text().strip()))
    db = sqlite3.connect(data / "roomsvc.db") if writable else sqlite3.connect(f"file:{data / 'roomsvc.db'}?mode=ro", uri=True)
    cipher = EnvelopeCipher()
    for kid, wrapped, active in db.execute("SELECT id, wrapped, active FROM keys"):
        cipher.add_key(kid, master.unwrap(kid, bytes(wrapped)), active=bool(active))
    row = db.execute(
        "SELECT s.room, s.owner, s.secret_id, s.delegated_to, s.type, s.name, s.kind, s.version, s.created_at, "
        "s.updated_at, v.kek_id, v.wrapped_dek, v.ciphertext, v.pk FROM room_secrets s JOIN room_secret_versions v "
        "ON v.secret_pk = s.pk AND v.version = s.version WHERE s.room = ? AND s.owner = ? AND s.secret_id = ?",
        (room, owner, secret_id),
    ).fetchone()
    return db, cipher, _secret_record(row[:10]), row


def _decrypt(cipher: Any, record: Any, row: Any) -> dict[str, Any]:
    import json as js

    from roomsvc.domain.ports import EncryptedBlob
    from roomsvc.domain.secrets import secret_aad

    return dict(js.loads(cipher.decrypt(EncryptedBlob(row[10], bytes(row[11]), bytes(row[12])), secret_aad(record))))


def read_credential(server: Any, room: str, owner: str, secret_id: str = "oidc") -> dict[str, Any]:
    """White box: the stored credential (refresh token included), decrypted with the
    server's master key from a read-only connection. Stands in for "the person looks
    at the grant in the provider's account page" in tests that revoke it there."""
    db, cipher, record, row = _credential_row(server, room, owner, secret_id)
    try:
        return _decrypt(cipher, record, row)
    finally:
        db.close()


def rewrite_credential(server: Any, room: str, owner: str, change: Any, secret_id: str = "oidc") -> None:
    """White box: change the stored credential in place (same version), as someone with
    write access to the database file, or a broken provider, could leave it."""
    import json as js

    from roomsvc.domain.secrets import secret_aad

    db, cipher, record, row = _credential_row(server, room, owner, secret_id, writable=True)
    try:
        value = _decrypt(cipher, record, row)
        change(value)
        blob = cipher.encrypt(js.dumps(value).encode(), secret_aad(record))
        with db:
            db.execute("UPDATE room_secret_versions SET kek_id = ?, wrapped_dek = ?, ciphertext = ? WHERE pk = ?",
                       (blob.kek_id, blob.wrapped_dek, blob.ciphertext, row[13]))
    finally:
        db.close()


async def revoke_at_provider(issuer: str, token: str, hint: str, client_id: str, client_secret: str) -> int:
    """RFC 7009 revocation, as the provider's account page would do it."""
    import base64 as b64

    basic = b64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{issuer}/token/revocation", data={"token": token, "token_type_hint": hint},
                          headers={"Authorization": f"Basic {basic}"}) as r:
            return r.status
