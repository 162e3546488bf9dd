"""A small HTTP client for the roomsvc API (the CLI's client commands; the toolkit proxy resolves headers with it)."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import aiohttp

from roomsvc.errors import DependencyMissing, OperationFailed, RateLimited, RoomsvcError


def _subclasses(cls: type[RoomsvcError]) -> list[type[RoomsvcError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


#: every error class by its wire name, so the CLI raises what the server raised; where
#: classes share a name (InvalidTransition is an invalid_state) the most general one
_BY_NAME: dict[str, type[RoomsvcError]] = {}
for _cls in _subclasses(RoomsvcError):
    _BY_NAME.setdefault(_cls.name, _cls)


class ApiClient:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "ApiClient":
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    async def request(self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self._session is not None
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            async with self._session.request(
                method, self.base_url + path, json=json_body, params=clean, headers=self._headers(), allow_redirects=False
            ) as response:
                return await _decode(response)
        except aiohttp.ClientConnectionError as exc:
            raise DependencyMissing(
                f"cannot reach roomsvc at {self.base_url} ({type(exc).__name__}); is `roomsvc serve` running? "
                "set --url or ROOMSVC_URL"
            ) from None

    async def stream(self, method: str, path: str) -> AsyncIterator[dict[str, Any]]:
        """JSON lines from a streaming endpoint (key rotation progress)."""
        assert self._session is not None
        try:
            async with self._session.request(
                method, self.base_url + path, headers=self._headers(), timeout=aiohttp.ClientTimeout(total=None)
            ) as response:
                if response.status >= 400:
                    await _decode(response)
                async for line in response.content:
                    if line.strip():
                        yield json.loads(line)
        except aiohttp.ClientConnectionError as exc:
            raise DependencyMissing(f"cannot reach roomsvc at {self.base_url} ({type(exc).__name__})") from None


async def _decode(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        body = None
    if response.status >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        cls = _BY_NAME.get(error.get("name", ""), RoomsvcError)
        exc = cls(error.get("message") or f"HTTP {response.status}")
        if isinstance(exc, RateLimited) and isinstance(error.get("retry_after"), (int, float)):
            exc.retry_after = float(error["retry_after"])
        raise exc
    if not isinstance(body, dict):
        raise OperationFailed(f"unexpected answer from the server (HTTP {response.status})")
    return body
