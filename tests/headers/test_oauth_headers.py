"""Header injection with a real OAuth credential from the real test provider: the proxy in
front of the provider's userinfo endpoint keeps answering 200 across token expiry."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3

import aiohttp

from roomsvc.crypto.envelope import EnvelopeCipher, MasterKey
from roomsvc.domain.ports import EncryptedBlob
from roomsvc.domain.secrets import secret_aad
from roomsvc.storage.sqlite.store import _secret_record
from tests.headers.test_header_injection import Proxy
from tests.oauth.conftest import ACCESS_TOKEN_TTL, OAuthEnv
from tests.oauth.flows import run_flow

ROOM = "room1"


def poison_access_token(server, owner: str, secret_id: str = "oidc") -> None:
    """White box: rewrite the stored credential in the database file (as an attacker with
    write access to storage, or a broken provider, would leave it) with CR/LF in its token."""
    data = server.data_dir
    master = MasterKey(base64.b64decode((data / "master.key").read_text().strip()))
    db = sqlite3.connect(data / "roomsvc.db")
    try:
        cipher = EnvelopeCipher()
        for kid, wrapped, active in db.execute("SELECT id, wrapped, active FROM keys"):
            cipher.add_key(kid, master.unwrap(kid, bytes(wrapped)), active=bool(active))
        row = db.execute(
            "SELECT s.room, s.owner, s.secret_id, s.delegated_to, s.type, s.name, s.kind, s.version, s.created_at, "
            "s.updated_at, v.kek_id, v.wrapped_dek, v.ciphertext, v.pk FROM room_secrets s JOIN room_secret_versions v "
            "ON v.secret_pk = s.pk AND v.version = s.version WHERE s.room = ? AND s.owner = ? AND s.secret_id = ?",
            (ROOM, owner, secret_id),
        ).fetchone()
        record = _secret_record(row[:10])
        value = json.loads(cipher.decrypt(EncryptedBlob(row[10], bytes(row[11]), bytes(row[12])), secret_aad(record)))
        value["access_token"] = value["access_token"] + "\r\nSet-Cookie: stolen=1"
        blob = cipher.encrypt(json.dumps(value).encode(), secret_aad(record))
        with db:
            db.execute("UPDATE room_secret_versions SET kek_id = ?, wrapped_dek = ?, ciphertext = ? WHERE pk = ?",
                       (blob.kek_id, blob.wrapped_dek, blob.ciphertext, row[13]))
    finally:
        db.close()


async def test_proxy_in_front_of_userinfo_survives_token_expiry(oauth_env: OAuthEnv, browser: aiohttp.ClientSession) -> None:
    tool_id, person_id = oauth_env.ids("toolkit", "erin")
    tool = await oauth_env.connect(tool_id, role="tool")
    person = await oauth_env.connect(person_id)
    try:
        # the person grants the toolkit a credential (stored as the toolkit's room secret)
        grant, _ = await run_flow(browser, tool, person, person_id, delegate_to=tool_id)
        assert grant["credential"]["owner"] == tool_id
        token = oauth_env.server.token(tool_id, ROOM, api=("secrets",), role="tool")
        proxy = Proxy(oauth_env.server, token, oauth_env.issuer, ["Authorization:Bearer {oidc}"],
                      env={"ROOMSVC_PROXY_CACHE_TTL": "60", "ROOMSVC_PROXY_REFRESH_MARGIN": "1"}, room=ROOM)
        try:
            before = (await oauth_env.stats())["token"].get("refresh_token", 0)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{proxy.url}/me") as r:
                    assert r.status == 200 and (await r.json())["sub"] == person_id
                await asyncio.sleep(ACCESS_TOKEN_TTL + 1)  # the access token has expired at the provider
                async with session.get(f"{proxy.url}/me") as r:
                    assert r.status == 200 and (await r.json())["sub"] == person_id
            after = (await oauth_env.stats())["token"].get("refresh_token", 0)
            assert after == before + 1  # the proxy re-resolved and roomsvc refreshed exactly once
        finally:
            log = proxy.stop()
        assert grant["access_token"] not in log

        # the same credential through the headers endpoint: the current access token only
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{oauth_env.server.url}/v1/rooms/{ROOM}/headers",
                                    json={"header_secrets": ["Authorization:Bearer {oidc}"]},
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                body = await r.json()
        header = body["headers"][0]
        assert header["value"].startswith("Bearer ") and header["allowed_hosts"] == ["127.0.0.1"]
        assert header["expires_at"] is not None
        status, info = await oauth_env.userinfo(header["value"].removeprefix("Bearer "))
        assert status == 200 and info["sub"] == person_id

        # a stored access token with CR/LF in it is refused at render time, naming only the placeholder
        poison_access_token(oauth_env.server, tool_id)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{oauth_env.server.url}/v1/rooms/{ROOM}/headers",
                                    json={"header_secrets": ["Authorization:Bearer {oidc}"]},
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 400
                error = (await r.json())["error"]
        assert "{oidc}" in error["message"] and "control characters" in error["message"]
        assert "Set-Cookie" not in json.dumps(error)
    finally:
        await tool.close()
        await person.close()


async def test_a_proxy_for_a_connector_credential_refuses_hosts_outside_its_allow_list(
    oauth_env: OAuthEnv, browser: aiohttp.ClientSession
) -> None:
    tool_id, person_id = oauth_env.ids("toolkit", "frank")
    tool = await oauth_env.connect(tool_id, role="tool")
    person = await oauth_env.connect(person_id)
    try:
        await run_flow(browser, tool, person, person_id, delegate_to=tool_id)
        token = oauth_env.server.token(tool_id, ROOM, api=("secrets",), role="tool")
        # the connector allows 127.0.0.1 only; "localhost" is another host name
        upstream = oauth_env.issuer.replace("127.0.0.1", "localhost")
        proxy = Proxy(oauth_env.server, token, upstream, ["Authorization:Bearer {oidc}"], room=ROOM)
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{proxy.url}/me") as r:
                assert r.status == 403
                assert "may not be sent to localhost" in (await r.json())["error"]["message"]
        finally:
            proxy.stop()
    finally:
        await tool.close()
        await person.close()
