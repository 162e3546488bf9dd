"""``/v1/admin/...``: project-level operations with an operator token."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from roomsvc.domain.project_secrets import KIND_MCP_CLIENT
from roomsvc.errors import InvalidRequest, NotFound
from roomsvc.ids import parse_room
from roomsvc.transport.fields import opt_str
from roomsvc.transport.http.auth import caller, json_body, operator
from roomsvc.transport.http.keys import SERVICES

PROJECT_KINDS = ("keys", "pull")


async def create_room(request: web.Request) -> web.Response:
    body = await json_body(request, operator(request))
    record = await request.app[SERVICES].rooms.create_room(parse_room(body.get("name")))
    return web.json_response({"room": {"name": record.name, "created_at": record.created_at}}, status=201)


async def list_rooms(request: web.Request) -> web.Response:
    operator(request)
    rooms = await request.app[SERVICES].rooms.list_rooms()
    return web.json_response({"rooms": [{"name": r.name, "created_at": r.created_at} for r in rooms]})


# -- project secrets -------------------------------------------------------------------------


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in PROJECT_KINDS:
        raise NotFound(f"no project secret type {kind!r}; use 'keys' or 'pull'")
    return kind


async def list_project_secrets(request: web.Request) -> web.Response:
    kind = opt_str(request.query, "type")
    if kind is not None and kind not in (*PROJECT_KINDS, KIND_MCP_CLIENT):  # mcp-client: issue 17, listed only
        raise InvalidRequest("'type' must be 'keys', 'pull' or 'mcp-client'")
    # the service checks the operator grant itself, so a denial is audited
    records = await request.app[SERVICES].project_secrets.list(caller(request), kind=kind)
    return web.json_response({"secrets": [r.as_dict() for r in records]})


def _as_sent(body: dict[str, Any], key: str) -> Any:
    """A field as the client sent it (None when absent), unchecked: the service checks it,
    after the operator check, so a denial is audited whatever the body holds."""
    return body.get(key)


async def put_project_secret(request: web.Request) -> web.Response:
    principal = caller(request)
    kind = _kind(request)
    body = await json_body(request, principal)
    service = request.app[SERVICES].project_secrets
    secret_id = request.match_info["secret_id"]
    if kind == "keys":
        data = _as_sent(body, "data")
        record = await service.put_keys(principal, id=secret_id, data=data, name=opt_str(body, "name"))
    else:
        record = await service.put_pull(
            principal, id=secret_id, server=_as_sent(body, "server"), username=_as_sent(body, "username"),
            password=_as_sent(body, "password"), email=opt_str(body, "email"), name=opt_str(body, "name"),
        )
    return web.json_response({"secret": record.as_dict()})


async def delete_project_secret(request: web.Request) -> web.Response:
    # issue 17: an MCP client registration may be deleted (roomsvc registers again when next needed)
    kind = KIND_MCP_CLIENT if request.match_info["kind"] == KIND_MCP_CLIENT else _kind(request)
    await request.app[SERVICES].project_secrets.delete(caller(request), id=request.match_info["secret_id"], kind=kind)
    return web.json_response({"deleted": request.match_info["secret_id"]})


# -- keys ------------------------------------------------------------------------------------------


async def key_status(request: web.Request) -> web.Response:
    keys = await request.app[SERVICES].key_admin.status(caller(request))
    return web.json_response({"keys": [k.as_dict() for k in keys]})


async def rotate_keys(request: web.Request) -> web.StreamResponse:
    """Stream progress as JSON lines while the server keeps serving.

    The server does the work: a client that goes away (Ctrl-C on ``roomsvc keys
    rotate``) stops getting progress, not the rotation, which would otherwise stop
    half-way with the old key still needed.
    """
    key_admin = request.app[SERVICES].key_admin
    # refused before the stream starts, so the refusal is an ordinary error response
    principal = key_admin.authorize(caller(request))
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
    await response.prepare(request)
    listening = True

    async def send(line: dict[str, Any]) -> None:
        nonlocal listening
        if not listening:
            return
        try:
            await response.write(json.dumps(line).encode() + b"\n")
        except (ConnectionError, RuntimeError):
            listening = False

    async def progress(done: int, total: int) -> None:
        await send({"done": done, "total": total})

    # shielded: aiohttp may cancel the handler of a client that disconnects
    rotation = asyncio.ensure_future(key_admin.rotate(principal, progress=progress))
    # if nobody awaits it any more, its failure is already logged and audited
    rotation.add_done_callback(lambda task: task.cancelled() or task.exception())
    try:
        report = await asyncio.shield(rotation)
    except asyncio.CancelledError:
        listening = False
        raise
    except Exception as exc:  # noqa: BLE001 - the stream has started: report in-band and end it
        await send({"error": {"message": f"rotation failed: {type(exc).__name__}"}})
        return await _end(response)
    await send({"key_id": report.new_key_id, "rewrapped": report.rewrapped, "failed": report.failed})
    return await _end(response)


async def _end(response: web.StreamResponse) -> web.StreamResponse:
    try:
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return response


async def retire_key(request: web.Request) -> web.Response:
    await request.app[SERVICES].key_admin.retire(caller(request), request.match_info["key_id"])
    return web.json_response({"retired": request.match_info["key_id"]})


# -- tokens --------------------------------------------------------------------------------------


async def revoke_tokens(request: web.Request) -> web.Response:
    """Revoke one token (``{"jti": ...}``) or an identity's tokens issued before now
    (``{"identity": ..., "room": ...}``); open sockets on them close at once."""
    principal = caller(request)
    tokens = request.app[SERVICES].tokens
    await tokens.authorize(principal)  # first, and audited when denied
    body = await json_body(request, principal)
    has_jti, has_identity = "jti" in body, "identity" in body
    if has_jti == has_identity:
        raise InvalidRequest("send exactly one of 'jti' or 'identity'")
    if has_jti:
        if "room" in body:
            raise InvalidRequest("'room' narrows an identity revocation; a 'jti' names one token already")
        revocation = await tokens.revoke_token(principal, body["jti"])
    else:
        revocation = await tokens.revoke_identity(principal, body["identity"], body.get("room"))
    return web.json_response({"revoked": revocation.as_dict()})


# -- audit and backup ----------------------------------------------------------------------------


async def audit(request: web.Request) -> web.Response:
    operator(request)
    q = request.query
    try:
        since = float(q["since"]) if q.get("since") else None
        limit = int(q.get("limit", "1000"))
    except ValueError:
        raise InvalidRequest("'since' is seconds since the epoch and 'limit' an integer") from None
    records = await request.app[SERVICES].auditor.query(
        room=opt_str(q, "room"), identity=opt_str(q, "identity"), since=since, limit=max(1, min(limit, 100000))
    )
    return web.json_response({"audit": [r.__dict__ for r in records]})


async def prune_audit(request: web.Request) -> web.Response:
    """Delete audit lines older than the retention (or ``older_than`` seconds, never less);
    ``dry_run`` only counts them. The service checks the operator grant, so a denial is audited."""
    principal = caller(request)
    body: dict[str, Any] = await json_body(request, principal) if request.can_read_body else {}
    older_than, dry_run = body.get("older_than"), body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("'dry_run' must be true or false")
    report = await request.app[SERVICES].audit_pruner.prune(principal, older_than=older_than, dry_run=dry_run)
    return web.json_response({"prune": report.as_dict()})


async def backup(request: web.Request) -> web.Response:
    """Write a backup named ``name`` into ``server.backup_dir`` (never elsewhere, never
    over an existing file)."""
    key_admin = request.app[SERVICES].key_admin
    principal = key_admin.authorize(caller(request))  # before the body is read
    body: dict[str, Any] = await json_body(request, principal)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("'name' must be the backup's file name inside the server's backup directory")
    path = await key_admin.backup(principal, name)
    return web.json_response({"backup": path})
