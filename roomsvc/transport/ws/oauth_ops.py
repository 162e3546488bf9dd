"""Native websocket ops for OAuth tokens and secret requests between participants.

Registered with :func:`~roomsvc.transport.ws.ops.op` when :mod:`roomsvc.transport.ws.native`
imports this module. Field names follow MeshAgent's (``from_participant_id``,
``delegate_to``, ``request_id``, ``code``, ``error``); see docs/oauth.md.
"""

from __future__ import annotations

from typing import Any

from roomsvc.transport.fields import asked_participant, b64, oauth_client, opt_seconds, opt_str, req_str, value_or_text
from roomsvc.transport.ws.ops import Context, op

# -- OAuth -------------------------------------------------------------------------------------------


@op("secrets.request_oauth_token")
async def request_oauth_token(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    grant = await ctx.services.oauth.request_token(
        ctx.participant, from_participant_id=asked_participant(data), delegate_to=opt_str(data, "delegate_to"),
        timeout=opt_seconds(data), redirect_uri=opt_str(data, "redirect_uri"), **oauth_client(data),
    )
    return grant.as_dict()


@op("secrets.get_offline_oauth_token")
async def get_offline_oauth_token(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    grant = await ctx.services.oauth.offline_token(
        ctx.participant.principal, ctx.room, delegated_to=opt_str(data, "delegated_to"),
        delegated_by=opt_str(data, "delegated_by"), **oauth_client(data),
    )
    return grant.as_dict() if grant is not None else {"access_token": None}


@op("secrets.provide_oauth_authorization")
async def provide_oauth_authorization(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    request_id = req_str(data, "request_id")
    if data.get("error"):
        await ctx.services.oauth.reject_authorization(ctx.participant, request_id, opt_str(data, "error"))
        return {}
    code = req_str(data, "code")
    await ctx.services.oauth.provide_authorization(ctx.participant, request_id, code)
    return {}


@op("secrets.reject_oauth_authorization")
async def reject_oauth_authorization(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    request_id = req_str(data, "request_id")
    await ctx.services.oauth.reject_authorization(ctx.participant, request_id, opt_str(data, "error"))
    return {}


# -- plain secrets -------------------------------------------------------------------------------------


@op("secrets.request_secret")
async def request_secret(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    url = req_str(data, "url")
    provided = await ctx.services.secret_requests.request(
        ctx.participant, url=url, type=opt_str(data, "type"), from_participant_id=asked_participant(data),
        timeout=opt_seconds(data), delegate_to=opt_str(data, "delegate_to"),
    )
    return {"secret": provided.record.as_dict(), "value": b64(provided.value.reveal())}


@op("secrets.provide_secret")
async def provide_secret(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    request_id = req_str(data, "request_id")
    if data.get("error"):
        ctx.services.secret_requests.reject(ctx.participant, request_id, opt_str(data, "error"))
        return {}
    value = value_or_text(data, binary=("value",), limit=ctx.services.secrets.max_value_size + 1,
                          hint="give the secret as exactly one of 'value' (base64) or 'text', or an 'error'")
    ctx.services.secret_requests.provide(ctx.participant, request_id, value)
    return {}


@op("secrets.reject_secret")
async def reject_secret(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    request_id = req_str(data, "request_id")
    ctx.services.secret_requests.reject(ctx.participant, request_id, opt_str(data, "error"))
    return {}


@op("secrets.delete_requested_secret")
async def delete_requested_secret(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    url = req_str(data, "url")
    record = await ctx.services.secret_requests.delete_requested(
        ctx.participant.principal, ctx.room, url=url, type=opt_str(data, "type"),
        delegated_to=opt_str(data, "delegated_to"),
    )
    return {"deleted": record.id}

