"""Toolkit ``secrets``: MeshAgent's room secrets over :class:`~roomsvc.domain.secrets.SecretService`.

Shapes follow SDK 0.44's ``SecretsClient`` (docs/meshagent.md has the table). Who may do
what is decided by the service on every call, exactly as for the native protocol and
HTTP: the ``secrets`` grant, ``admin`` for ``for_identity``, delegation. This module only
translates; the audit log names the channel ``meshagent``.

Two MeshAgent habits differ from roomsvc's own API and are kept here:

* ``get_secret`` of a missing secret is an *empty* reply (the SDK returns ``None``), not
  an error; every other failure is still an error;
* ``get_secret`` may name the secret by ``type`` and ``name`` instead of ``secret_id``.
"""

from __future__ import annotations

import uuid
from typing import TypedDict

from roomsvc.domain.ports import SecretRecord
from roomsvc.errors import InvalidRequest, NotFound
from roomsvc.ids import SecretId
from roomsvc.transport.fields import opt_str
from roomsvc.transport.meshagent.packing import (
    Content,
    EmptyContent,
    FileContent,
    JsonContent,
    content_data,
)
from roomsvc.transport.meshagent.tools import CHANNEL, ToolContext, fields, tool


def secret_info(record: SecretRecord) -> dict[str, object]:
    """``SecretInfo``: metadata only. ``type`` and ``name`` are always strings (the SDK
    requires them; the service stores defaults when a client sends null)."""
    return {"id": record.id, "type": record.type, "name": record.name, "delegated_to": record.delegated_to}


class _Addressing(TypedDict):
    secret_id: str
    delegated_to: str | None
    for_identity: str | None


def _addressing(data: dict[str, object], id_key: str = "secret_id") -> _Addressing:
    return {
        "secret_id": opt_str(data, id_key) or "",
        "delegated_to": opt_str(data, "delegated_to"),
        "for_identity": opt_str(data, "for_identity"),
    }


@tool("secrets", "set_secret")
async def set_secret(ctx: ToolContext, content: Content) -> Content:
    """Binary content: headers ``secret_id, type, name, delegated_to, for_identity``, bytes = value.

    Without a ``secret_id`` the server picks one and answers it as ``{"id": ...}``.
    """
    data = fields(content)
    if data.get("has_data") is False:
        raise InvalidRequest("set_secret needs the secret bytes (has_data is false)")
    addressing = _addressing(data)
    addressing["secret_id"] = addressing["secret_id"] or uuid.uuid4().hex
    record = await ctx.services.secrets.set(
        ctx.participant.principal, ctx.room, value=content_data(content), type=opt_str(data, "type"),
        name=opt_str(data, "name"), channel=CHANNEL, **addressing,
    )
    return JsonContent({"id": record.id})


@tool("secrets", "get_secret")
async def get_secret(ctx: ToolContext, content: Content) -> Content:
    """A file content (name, mime_type = the stored type, bytes), or empty when missing."""
    data = fields(content)
    addressing = _addressing(data)
    try:
        if not addressing["secret_id"]:
            addressing["secret_id"] = await _find_by_label(ctx, data)
        record, value = await ctx.services.secrets.get(
            ctx.participant.principal, ctx.room, channel=CHANNEL, **addressing
        )
    except NotFound:
        return EmptyContent()
    return FileContent(name=record.name, mime_type=record.type, data=value.reveal())


async def _find_by_label(ctx: ToolContext, data: dict[str, object]) -> SecretId:
    """The id of the caller's secret with that ``type`` and/or ``name`` (TS and Dart look up so).

    Raises:
        InvalidRequest: neither an id nor a label given.
        NotFound: no secret with that label.
    """
    type_, name = opt_str(data, "type"), opt_str(data, "name")
    if type_ is None and name is None:
        raise InvalidRequest("get_secret needs 'secret_id', or 'type' and 'name'")
    delegated_to = opt_str(data, "delegated_to")
    records = await ctx.services.secrets.list(
        ctx.participant.principal, ctx.room, for_identity=opt_str(data, "for_identity"), channel=CHANNEL
    )
    for record in records:
        if (type_ in (None, record.type)) and (name in (None, record.name)) and record.delegated_to == delegated_to:
            return record.id
    raise NotFound("no secret with that type and name")


@tool("secrets", "exists")
async def exists(ctx: ToolContext, content: Content) -> Content:
    found = await ctx.services.secrets.exists(
        ctx.participant.principal, ctx.room, channel=CHANNEL, **_addressing(fields(content))
    )
    return JsonContent({"exists": found})


@tool("secrets", "list_secrets")
async def list_secrets(ctx: ToolContext, content: Content) -> Content:
    data = fields(content)
    records = await ctx.services.secrets.list(
        ctx.participant.principal, ctx.room, for_identity=opt_str(data, "for_identity"), channel=CHANNEL
    )
    return JsonContent({"secrets": [secret_info(r) for r in records]})


@tool("secrets", "delete_secret")
async def delete_secret(ctx: ToolContext, content: Content) -> Content:
    """Json ``{id, delegated_to}``; a missing secret is the error NOT_FOUND (1003)."""
    data = fields(content)
    key = "id" if data.get("id") is not None else "secret_id"
    await ctx.services.secrets.delete(
        ctx.participant.principal, ctx.room, channel=CHANNEL, **_addressing(data, key)
    )
    return EmptyContent()
