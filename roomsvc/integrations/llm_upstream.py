"""The LLM proxy's outbound side: one aiohttp ClientSession to the providers' APIs.

Implements :class:`~roomsvc.domain.llm.ports.Upstream`. Connect, read (silence) and total
timeouts come from ``[llm]``; redirects are not followed, no cookies are kept, proxy
environment variables are ignored, and answers are asked for uncompressed (usage is read
from them as they pass). aiohttp's exceptions become roomsvc errors here, chained; their
text never carries a header, so the provider key cannot leak through them.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp

from roomsvc.domain.llm.ports import UpstreamRequest
from roomsvc.errors import DependencyMissing, Timeout


class _Answer:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = list(response.headers.items())

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except asyncio.TimeoutError:
            raise Timeout("the LLM provider stopped answering (llm.read_timeout / llm.timeout)") from None
        except aiohttp.ClientError as exc:
            raise DependencyMissing(f"the connection to the LLM provider broke ({type(exc).__name__})") from None


class AiohttpUpstream:
    def __init__(self, *, connect_timeout: float, read_timeout: float, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    @asynccontextmanager
    async def send(self, request: UpstreamRequest) -> AsyncIterator[_Answer]:
        headers = {**request.headers, "Accept-Encoding": "identity"}
        try:
            response = await self._client().request(
                request.method, request.url, headers=headers, data=request.body or None, allow_redirects=False,
            )
        except asyncio.TimeoutError:
            raise Timeout("the LLM provider did not answer in time (llm.connect_timeout / llm.read_timeout)") from None
        except aiohttp.ClientError as exc:
            raise DependencyMissing(f"the LLM provider could not be reached ({type(exc).__name__})") from None
        try:
            yield _Answer(response)
        finally:
            if response.content.at_eof():
                response.release()
            else:  # unread (the caller went away, or an error): drop the connection, the upstream sees it
                response.close()
