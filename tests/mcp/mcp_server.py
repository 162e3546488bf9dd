"""A test MCP server built with the official ``mcp`` SDK (Streamable HTTP), protected as an
OAuth resource server by the real test provider (tests/peers/oidc).

Run as ``python -m tests.mcp.mcp_server`` with, in the environment:

* ``PORT``: where to listen on 127.0.0.1;
* ``ISSUER``: the provider that signs the access tokens (its JWKS verifies them; ``iss``
  and ``aud`` = this server's resource are checked);
* ``PRM_ISSUER`` (optional): the authorization server this server's protected resource
  metadata names, when it should not be ``ISSUER`` (hostile-metadata tests);
* ``PRM_RESOURCE`` (optional): the ``resource`` its metadata names, when it should not be
  its own URL (hostile-metadata tests).

It also serves ``/.well-known/oauth-authorization-server/fake-as``: metadata that
names another issuer than the one it is fetched for. Prints one JSON line when listening.
Tools: ``whoami`` (the ``sub`` and ``aud`` the server saw), ``echo``, ``fail`` (a tool
error) and ``admin_echo`` (needs the wider scope ``mcp:admin``: a step-up).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import jwt
import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.requests import Request
from starlette.responses import JSONResponse

PORT = int(os.environ["PORT"])
ISSUER = os.environ["ISSUER"]
URL = f"http://127.0.0.1:{PORT}/mcp"
SEEN: list[str] = []  # every token's sub, in order (served at /__seen)


class ProviderJwtVerifier:
    """RFC 9068 access tokens of the test provider, bound to this server's resource."""

    def __init__(self) -> None:
        self._jwks = jwt.PyJWKClient(f"{ISSUER}/jwks")

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["RS256", "PS256", "ES256"], audience=URL, issuer=ISSUER)
        except jwt.PyJWTError:
            return None
        SEEN.append(str(claims.get("sub")))
        return AccessToken(
            token=token, client_id=str(claims.get("client_id", "")), scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims.get("exp", time.time())), resource=URL, subject=str(claims.get("sub")), claims=claims,
        )


server = MCPServer(
    "roomsvc-test-mcp",
    token_verifier=ProviderJwtVerifier(),
    auth=AuthSettings(
        issuer_url=os.environ.get("PRM_ISSUER") or ISSUER,
        resource_server_url=os.environ.get("PRM_RESOURCE") or URL,
        required_scopes=["mcp:tools"],
        validate_token_resource=False,  # the verifier checks `aud` itself
    ),
)


@server.tool()
def whoami() -> str:
    """The upstream identity this MCP server saw for the call."""
    token = get_access_token()
    claims = token.claims if token and token.claims else {}
    return json.dumps({"sub": claims.get("sub"), "aud": claims.get("aud")})


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason (a tool error as the MCP server sends it)."""
    raise ToolError(reason)


@server.tool()
def admin_echo(text: str) -> str:
    """Echo, for tokens with the wider scope ``mcp:admin`` only (a step-up)."""
    return f"admin: {text}"


class StepUp:
    """ASGI middleware: a ``tools/call`` of ``admin_echo`` with a token lacking ``mcp:admin``
    gets 403 ``insufficient_scope`` naming the wider scopes (the SDK's scope check is per
    endpoint, not per tool). The token's signature is checked by the SDK's own middleware on
    every other request; here only its ``scope`` claim is read."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/mcp":
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            call = json.loads(body)
        except ValueError:
            call = None
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode()
        if (isinstance(call, dict) and call.get("method") == "tools/call"
                and (call.get("params") or {}).get("name") == "admin_echo" and auth.startswith("Bearer ")):
            scopes = str(jwt.decode(auth[7:], options={"verify_signature": False}).get("scope", "")).split()
            if "mcp:admin" not in scopes:
                challenge = (f'Bearer error="insufficient_scope", scope="mcp:tools mcp:admin", '
                             f'resource_metadata="http://127.0.0.1:{PORT}/.well-known/oauth-protected-resource/mcp"')
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"www-authenticate", challenge.encode()), (b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"error": "insufficient_scope"}'})
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@server.custom_route("/.well-known/oauth-authorization-server/fake-as", methods=["GET"])
async def fake_as(request: Request) -> JSONResponse:
    base = f"http://127.0.0.1:{PORT}"
    return JSONResponse({
        "issuer": f"{base}/someone-else", "authorization_endpoint": f"{base}/auth", "token_endpoint": f"{base}/token",
        "code_challenge_methods_supported": ["S256"], "response_types_supported": ["code"],
    })


@server.custom_route("/__seen", methods=["GET"])
async def seen(request: Request) -> JSONResponse:
    return JSONResponse({"subs": SEEN})


if __name__ == "__main__":
    app = StepUp(server.streamable_http_app(stateless_http=False))
    config = uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning", lifespan="on")
    instance = uvicorn.Server(config)
    sys.stdout.write(json.dumps({"url": URL}) + "\n")
    sys.stdout.flush()
    instance.run()
