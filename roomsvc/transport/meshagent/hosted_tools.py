"""MeshAgent's ``room.invoke_tool`` with a ``participant_id``: a tool of a toolkit another
participant hosts. roomsvc hosts no MeshAgent toolkits itself, but a participant that
announces one (attribute ``toolkit``, e.g. the MCP bridge ``roomsvc toolkit mcp``, issue 17)
answers the native ``call`` method ``tools.call``; the invocation becomes that call and its
answer the reply's json content. Everything the call rules say applies (the limiter, the
timeout ``websocket.max_call_timeout``, the callee's errors)."""

from __future__ import annotations

from roomsvc.errors import NotFound
from roomsvc.transport.meshagent.packing import Content, EmptyContent, JsonContent
from roomsvc.transport.meshagent.tools import ToolContext, fields


async def hosted_tool(ctx: ToolContext, participant_id: str, toolkit: str, tool: str, content: Content) -> Content:
    """Raises: NotFound (nobody with that id hosts that toolkit), Timeout, the callee's error."""
    target = ctx.services.rooms.find(ctx.participant.room, participant_id)
    if target.attributes.get("toolkit") != toolkit:
        raise NotFound(f"participant {participant_id[:40]!r} hosts no toolkit {toolkit[:40]!r}")
    arguments = {} if isinstance(content, EmptyContent) else fields(content)
    answer = await ctx.services.rooms.call(
        ctx.participant, participant_id, "tools.call", {"name": tool, "arguments": arguments},
        timeout=ctx.limits.max_call_timeout,
    )
    return JsonContent(answer)
