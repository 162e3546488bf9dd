"""The MCP protocol side of the bridge: the official ``mcp`` SDK's Streamable HTTP client.

This is the only module that imports ``mcp`` (and the ``httpx2`` client it is built on).
Each operation opens a session for one upstream identity with that identity's bearer
token (the SDK's server binds a session to the token's subject, so sessions are never
shared between people), runs, and closes it. A 401 or 403 from the server is raised as
:class:`AuthorizationNeeded` carrying the server's ``WWW-Authenticate`` challenge, so the
caller can discover, ask for consent or step up, and retry. Results and tool errors are
returned as the MCP server sent them (the SDK's result objects, dumped to JSON data).

The token is handed to the transport in a header only; it never reaches a log line, an
error message or a result.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from roomsvc.errors import ProviderUnavailable, ReauthRequired, RoomsvcError


class AuthorizationNeeded(ReauthRequired):
    """The MCP server answered 401/403. ``challenge`` is its WWW-Authenticate value."""

    def __init__(self, status: int, challenge: str) -> None:
        super().__init__(f"the MCP server needs authorization (HTTP {status})")
        self.status = status
        self.challenge = challenge


class _Recorder(httpx2.Auth):
    """Adds the bearer token and remembers the last 401/403 challenge."""

    def __init__(self, token: str | None, headers: Mapping[str, str]) -> None:
        self._token = token
        self._headers = dict(headers)
        self.refused: tuple[int, str] | None = None

    def __repr__(self) -> str:
        return "_Recorder(<token hidden>)"

    def auth_flow(self, request: httpx2.Request) -> Any:
        for name, value in self._headers.items():
            request.headers[name] = value
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code in (401, 403):
            self.refused = (response.status_code, response.headers.get("WWW-Authenticate", "")[:8192])


class McpUpstream:
    """One MCP server (Streamable HTTP) and the static headers it takes (``--header``)."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> None:
        self.url = url
        self._headers = dict(headers or {})
        self._timeout = timeout

    @asynccontextmanager
    async def _session(self, token: str | None, extra: Mapping[str, str]) -> AsyncIterator[ClientSession]:
        recorder = _Recorder(token, {**self._headers, **extra})
        try:
            async with create_mcp_http_client(auth=recorder, timeout=httpx2.Timeout(self._timeout)) as http:
                async with streamable_http_client(self.url, http_client=http) as streams:
                    async with ClientSession(streams[0], streams[1]) as session:
                        await session.initialize()
                        yield session
        except RoomsvcError:
            raise
        except BaseException as exc:  # the SDK raises many kinds (and groups) for a refused request
            if recorder.refused is not None:
                raise AuthorizationNeeded(*recorder.refused) from None
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise ProviderUnavailable(f"the MCP server could not be used ({type(exc).__name__})") from None

    async def list_tools(self, token: str | None, *, headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        async with self._session(token, headers or {}) as session:
            result = await session.list_tools()
            return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in result.tools]

    async def call_tool(
        self, token: str | None, name: str, arguments: Mapping[str, Any] | None, *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The tool's ``CallToolResult`` as JSON data (``isError`` true for a tool error)."""
        async with self._session(token, headers or {}) as session:
            result = await session.call_tool(name, dict(arguments or {}))
            return dict(result.model_dump(mode="json", by_alias=True, exclude_none=True))
