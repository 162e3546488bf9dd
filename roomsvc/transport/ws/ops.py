"""Request handlers of the native protocol: ``type`` -> ``async op(ctx, data) -> reply data``.

Each one parses its fields, calls a domain service and shapes the reply; rules live in
the domain. Secret values travel base64-encoded (``value``) or as UTF-8 (``text``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from roomsvc.config import WebsocketSettings
from roomsvc.domain.rooms import Participant
from roomsvc.domain.services import Services
from roomsvc.errors import InvalidRequest, Rejected, RoomsvcError
from roomsvc.transport.fields import b64, opt_seconds, opt_str, opt_unb64, opt_version, req_str, value_or_text
from roomsvc.transport.ws.connection import Connection

CHANNEL = "ws"


@dataclass
class Context:
    services: Services
    participant: Participant
    conn: Connection
    limits: WebsocketSettings

    @property
    def room(self) -> str:
        return self.participant.room


Op = Callable[[Context, dict[str, Any]], Awaitable[Any]]
OPS: dict[str, Op] = {}


def op(name: str) -> Callable[[Op], Op]:
    def register(fn: Op) -> Op:
        OPS[name] = fn
        return fn

    return register


# -- presence and messages ------------------------------------------------------------------


@op("ping")
async def ping(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"pong": True}


@op("participants.list")
async def participants_list(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"participants": [p.info().as_dict() for p in ctx.services.rooms.participants(ctx.participant.room)]}


@op("participant.set_attributes")
async def set_attributes(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise InvalidRequest("'attributes' must be an object")
    ctx.services.rooms.set_attributes(ctx.participant, attributes)
    return {"participant": ctx.participant.info().as_dict()}


def _attachment(ctx: Context, data: dict[str, Any]) -> bytes | None:
    return opt_unb64(data.get("attachment"), "attachment", limit=ctx.limits.max_message_size)


@op("message.send")
async def message_send(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    to = req_str(data, "to")
    ctx.services.rooms.send(ctx.participant, to, data.get("message_type"), data.get("body"), _attachment(ctx, data))
    return {"delivered": 1}


@op("message.broadcast")
async def message_broadcast(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    count = ctx.services.rooms.broadcast(ctx.participant, data.get("message_type"), data.get("body"), _attachment(ctx, data))
    return {"delivered": count}


@op("call")
async def call(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    """Ask another participant (it gets a ``call`` push) and wait for its ``call.reply``."""
    limit = ctx.limits.max_call_timeout
    timeout = opt_seconds(data, most=limit) or limit
    body = await ctx.services.rooms.call(ctx.participant, req_str(data, "to"), data.get("method"), data.get("body"), timeout=timeout)
    return {"body": body}


@op("call.reply")
async def call_reply(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    error = data.get("error")
    failure: RoomsvcError | None = None
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else error
        if not isinstance(message, str):
            raise InvalidRequest("'error' must be a string or {'message': ...}")
        failure = Rejected(message[:500])
    ctx.services.rooms.answer(ctx.participant, req_str(data, "call_id"), body=data.get("body"), error=failure)
    return {}


# -- room secrets -----------------------------------------------------------------------------


def _value(ctx: Context, data: dict[str, Any]) -> bytes:
    # bounded only by the message size the socket already accepted: the service
    # decides about the value's size, so an oversized one gets the typed too_large
    # error (and an audit line) like on every other channel
    return value_or_text(data, binary=("value",), hint="give the secret as exactly one of 'value' (base64) or 'text'",
                         limit=ctx.limits.max_message_size)


def _addressing(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "secret_id": req_str(data, "id"),
        "delegated_to": opt_str(data, "delegated_to"),
        "for_identity": opt_str(data, "for_identity"),
    }


@op("secrets.set")
async def secrets_set(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    record = await ctx.services.secrets.set(
        ctx.participant.principal, ctx.room, value=_value(ctx, data), type=opt_str(data, "type"),
        name=opt_str(data, "name"), expected_version=opt_version(data), channel=CHANNEL, **_addressing(data),
    )
    return {"secret": record.as_dict()}


@op("secrets.get")
async def secrets_get(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    record, value = await ctx.services.secrets.get(ctx.participant.principal, ctx.room, channel=CHANNEL, **_addressing(data))
    return {"secret": record.as_dict(), "value": b64(value.reveal())}


@op("secrets.exists")
async def secrets_exists(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"exists": await ctx.services.secrets.exists(ctx.participant.principal, ctx.room, channel=CHANNEL, **_addressing(data))}


@op("secrets.list")
async def secrets_list(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    records = await ctx.services.secrets.list(
        ctx.participant.principal, ctx.room, for_identity=opt_str(data, "for_identity"), channel=CHANNEL
    )
    return {"secrets": [r.as_dict() for r in records]}


@op("secrets.delete")
async def secrets_delete(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    record = await ctx.services.secrets.delete(ctx.participant.principal, ctx.room, channel=CHANNEL, **_addressing(data))
    return {"deleted": record.id}


@op("secrets.versions")
async def secrets_versions(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.services.secrets.versions(ctx.participant.principal, ctx.room, channel=CHANNEL, **_addressing(data))
    return {"versions": [{"version": v, "created_at": t} for v, t in found]}
