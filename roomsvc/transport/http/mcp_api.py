"""roomsvc's OAuth Client ID Metadata Document (issue 17, docs/mcp.md).

An authorization server that supports Client ID Metadata Documents fetches this document
from the URL roomsvc uses as its ``client_id`` (``server.public_url`` +
:data:`~roomsvc.domain.mcp.registration.CIMD_PATH`): public, no secret in it.
"""

from __future__ import annotations

from aiohttp import web

from roomsvc.transport.http.keys import SERVICES


async def client_metadata(request: web.Request) -> web.Response:
    document = request.app[SERVICES].mcp.client_metadata_document()
    return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})
