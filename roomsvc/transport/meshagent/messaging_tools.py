"""Toolkit ``messaging``: MeshAgent messaging over :class:`~roomsvc.domain.rooms.RoomService`.

``send`` and ``broadcast`` go through the same ``RoomService.send`` / ``broadcast`` as
the native ``message.send`` / ``message.broadcast``, so native and MeshAgent clients reach
each other both ways. ``enable`` / ``disable`` switch the session's presence pushes
(:mod:`~roomsvc.transport.meshagent.session`).

SDK 0.44 sends the message as ``message_json`` (a JSON string) and the attachment as
``attachment_base64``; a Gen-1 ``message`` object is accepted too.
"""

from __future__ import annotations

from typing import Any

from roomsvc import strict_json
from roomsvc.transport.fields import opt_str, opt_unb64, req_str
from roomsvc.transport.meshagent.packing import Content, EmptyContent
from roomsvc.transport.meshagent.tools import ToolContext, fields, tool


@tool("messaging", "enable")
async def enable(ctx: ToolContext, content: Content) -> None:
    """Answer, then push ``messaging.enabled`` (the SDK goes online on the push)."""
    ctx.reply(EmptyContent())
    ctx.session.enable_messaging()


@tool("messaging", "disable")
async def disable(ctx: ToolContext, content: Content) -> Content:
    ctx.session.disable_messaging()
    return EmptyContent()


@tool("messaging", "send")
async def send(ctx: ToolContext, content: Content) -> Content:
    """``{to_participant_id, type, message_json, attachment_base64}``; an absent recipient is 1003."""
    data = fields(content)
    ctx.services.rooms.send(
        ctx.participant, req_str(data, "to_participant_id"), req_str(data, "type"), _message(data), _attachment(ctx, data)
    )
    return EmptyContent()


@tool("messaging", "broadcast")
async def broadcast(ctx: ToolContext, content: Content) -> Content:
    data = fields(content)
    ctx.services.rooms.broadcast(ctx.participant, req_str(data, "type"), _message(data), _attachment(ctx, data))
    return EmptyContent()


def _message(data: dict[str, Any]) -> Any:
    text = opt_str(data, "message_json")
    if text is None:
        return data.get("message", {})
    # as strict as a frame: the recipient's parser must read the message as we do
    return strict_json.loads(text, what="'message_json'")


def _attachment(ctx: ToolContext, data: dict[str, Any]) -> bytes | None:
    attachment = opt_unb64(data.get("attachment_base64"), "attachment_base64", limit=ctx.limits.max_message_size)
    return attachment or None
