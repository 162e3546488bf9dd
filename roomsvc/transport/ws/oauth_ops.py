"""Native websocket ops for OAuth tokens and secret requests between participants.

Registered with :func:`~roomsvc.transport.ws.ops.op` when :mod:`roomsvc.transport.ws.native`
imports this module. Field names follow MeshAgent's (``from_participant_id``,
``delegate_to``, ``request_id``, ``code``, ``error``); see docs/oauth.md.
"""

from __future__ import annotations

from typing import Any

from roomsvc.errors import InvalidRequest
from roomsvc.transport.ws import codec
from roomsvc.transport.ws.ops import Context, _opt_str, _str, op


def _timeout(data: dict[str, Any]) -> float | None:
    value = data.get("timeout")
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidRequest("'timeout' must be a number of seconds")
    return float(value)


def _client(data: dict[str, Any]) -> dict[str, Any]:
    oauth = data.get("oauth")
    if oauth is not None and not isinstance(oauth, dict):
        raise InvalidRequest("'oauth' must be an object")
    return {"connector": _opt_str(data, "connector"), "oauth": oauth}


def _participant_id(data: dict[str, Any]) -> str:
    # MeshAgent sends the consenting participant as participant_id
    value = data.get("from_participant_id", data.get("participant_id"))
    if not isinstance(value, str) or not value:
        raise InvalidRequest("'from_participant_id' must be a non-empty string")
    return value


# -- OAuth -------------------------------------------------------------------------------------------


@op("secrets.request_oauth_token")
async def request_oauth_token(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    grant = await ctx.services.oauth.request_token(
        ctx.participant, from_participant_id=_participant_id(data), delegate_to=_opt_str(data, "delegate_to"),
        timeout=_timeout(data), redirect_uri=_opt_str(data, "redirect_uri"), **_client(data),
    )
    return grant.as_dict()


@op("secrets.get_offline_oauth_token")
async def get_offline_oauth_token(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    grant = await ctx.services.oauth.offline_token(
        ctx.participant.principal, ctx.room, delegated_to=_opt_str(data, "delegated_to"),
        delegated_by=_opt_str(data, "delegated_by"), **_client(data),
    )
    return grant.as_dict() if grant is not None else {"access_token": None}


@op("secrets.provide_oauth_authorization")
async def provide_oauth_authorization(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    request_id = _str(data, "request_id")
    assert request_id is not None
    if data.get("error"):
        await ctx.services.oauth.reject_authorization(ctx.participant, request_id, _opt_str(data, "error"))
        return {}
    code = _str(data, "code")
    assert code is not None
    await ctx.services.oauth.provide_authorization(ctx.participant, request_id, code)
    return {}


@op("secrets.reject_oauth_authorization")
async def reject_oauth_authorization(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    request_id = _str(data, "request_id")
    assert request_id is not None
    await ctx.services.oauth.reject_authorization(ctx.participant, request_id, _opt_str(data, "error"))
    return {}


# -- plain secrets -------------------------------------------------------------------------------------


@op("secrets.request_secret")
async def request_secret(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    url = _str(data, "url")
    assert url is not None
    provided = await ctx.services.secret_requests.request(
        ctx.participant, url=url, type=_opt_str(data, "type"), from_participant_id=_participant_id(data),
        timeout=_timeout(data), delegate_to=_opt_str(data, "delegate_to"),
    )
    return {"secret": provided.record.as_dict(), "value": codec.b64(provided.value.reveal())}


@op("secrets.provide_secret")
async def provide_secret(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    request_id = _str(data, "request_id")
    assert request_id is not None
    if data.get("error"):
        ctx.services.secret_requests.reject(ctx.participant, request_id, _opt_str(data, "error"))
        return {}
    sources = [k for k in ("value", "text") if data.get(k) is not None]
    if len(sources) != 1:
        raise InvalidRequest("give the secret as exactly one of 'value' (base64) or 'text', or an 'error'")
    if sources[0] == "text":
        if not isinstance(data["text"], str):
            raise InvalidRequest("'text' must be a string")
        value = data["text"].encode()
    else:
        decoded = codec.unb64(data["value"], "value", limit=ctx.services.secrets.max_value_size + 1)
        assert decoded is not None
        value = decoded
    ctx.services.secret_requests.provide(ctx.participant, request_id, value)
    return {}


@op("secrets.reject_secret")
async def reject_secret(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    request_id = _str(data, "request_id")
    assert request_id is not None
    ctx.services.secret_requests.reject(ctx.participant, request_id, _opt_str(data, "error"))
    return {}


@op("secrets.delete_requested_secret")
async def delete_requested_secret(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    url = _str(data, "url")
    assert url is not None
    record = await ctx.services.secret_requests.delete_requested(
        ctx.participant.principal, ctx.room, url=url, type=_opt_str(data, "type"),
        delegated_to=_opt_str(data, "delegated_to"),
    )
    return {"deleted": record.id}

