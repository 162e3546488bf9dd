"""A consenting participant's app the MeshAgent way, and the test provider's counters
(run by .venv313's Python 3.13 inside the OAuth driver scripts, not by pytest).

The app is the ``oauth_token_request_handler`` given to RoomClient: from the pushed
request (endpoints, scopes, PKCE challenge) plus what the app knows itself (its client
id and redirect URI, as MeshAgent's Powerboards does) it builds the authorization URL,
logs in and consents at the provider with an HTTP client (tests/peers/oidc/flow_driver.py),
reads the code from the final redirect and calls provide_oauth_authorization.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from sdkutil import error_of, outcome


class Provider:
    """The test provider's counters and userinfo."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.issuer}/__stats") as r:
            return dict(await r.json())

    async def userinfo_status(self, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as s, s.get(f"{self.issuer}/me", headers=headers) as r:
            return r.status


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    return {
        "codes": after["token"]["authorization_code"] - before["token"]["authorization_code"],
        "refreshes": after["token"]["refresh_token"] - before["token"]["refresh_token"],
        "revoked": after["grants_revoked"] - before["grants_revoked"],
    }


class ConsentingApp:
    """Answers consent requests (or rejects them while ``reject_next`` is set).

    ``outsider``, when set, first tries to answer with the real code: the server must
    refuse it (only the participant asked may answer) without spending the code.
    """

    def __init__(self, cfg: dict[str, Any], out: dict[str, Any], *, login: str) -> None:
        sys.path.insert(0, cfg["flow_driver_dir"])
        from flow_driver import drive_consent  # tests/peers/oidc (aiohttp only)

        self.drive_consent = drive_consent
        self.client_id, self.redirect_uri, self.login = cfg["client_id"], cfg["redirect_uri"], login
        self.out = out
        self.calls: list[dict[str, Any]] = []
        self.reject_next = False
        self.room: Any = None  # the consenting participant's RoomClient, set once connected
        self.outsider: Any = None
        self.provided = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()

    async def settled(self) -> None:
        """Wait for every answer to be acknowledged: the requester may hear the outcome
        first, and leaving the room with an answer in flight aborts it."""
        await asyncio.gather(*self._running, return_exceptions=True)

    async def handle(self, request: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        self.calls.append({"authorization_endpoint": request.authorization_endpoint,
                           "token_endpoint": request.token_endpoint, "scopes": request.scopes,
                           "challenge_length": len(request.challenge or "")})
        try:
            if self.reject_next:
                await self.room.secrets.reject_oauth_authorization(request_id=request.request_id, error="cancelled")
                return
            code = await self.sign_in(request)
            if self.outsider is not None and "outsider_provides" not in self.out:
                self.out["outsider_provides"] = await outcome(
                    self.outsider.secrets.provide_oauth_authorization(request_id=request.request_id, code=code))
            await self.room.secrets.provide_oauth_authorization(request_id=request.request_id, code=code)
            self.provided.set()
        except Exception as exc:  # noqa: BLE001 - reported, not lost in the SDK's task callback
            self.out.setdefault("handler_errors", []).append(error_of(exc))

    async def sign_in(self, request: Any) -> str:
        state = secrets.token_urlsafe(16)
        url = request.authorization_endpoint + "?" + urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
            "scope": " ".join(request.scopes or []), "state": state,
            "code_challenge": request.challenge, "code_challenge_method": "S256",
        })
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            final = await self.drive_consent(browser, url, login=self.login)
        query = parse_qs(urlsplit(final).query)
        if query.get("state") != [state]:
            raise RuntimeError("the provider returned another state")
        return query["code"][0]
