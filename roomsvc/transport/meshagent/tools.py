"""The tool table: ``(toolkit, tool)`` -> ``async tool(ctx, content) -> content``.

MeshAgent clients call the room's built-in toolkits with ``room.invoke_tool``; its
``arguments`` field is the JSON half of a content and the message trailer its bytes.
Each tool reads its fields, calls a domain service and shapes the reply content, like
the native protocol's :mod:`~roomsvc.transport.ws.ops`; the rules live in the domain.

Older clients (SDK 0.25, "Gen-1") send one message type per call instead, e.g.
``secrets.set_secret`` whose header is the request itself and whose trailer is the bytes;
:data:`GEN1_TYPES` maps them onto the same tools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from roomsvc.config import WebsocketSettings
from roomsvc.domain.rooms import Participant
from roomsvc.domain.services import Services
from roomsvc.errors import InvalidRequest
from roomsvc.transport.meshagent.packing import BinaryContent, Content, JsonContent
from roomsvc.transport.meshagent.session import MeshAgentSession

CHANNEL = "meshagent"


@dataclass(frozen=True)
class ToolContext:
    services: Services
    session: MeshAgentSession
    #: the request's message id, which the reply carries
    message_id: int
    limits: WebsocketSettings

    def reply(self, content: Content) -> None:
        """Answer now, for a tool that must push something after its answer (it returns None)."""
        self.session.reply(self.message_id, content)

    @property
    def participant(self) -> Participant:
        return self.session.me

    @property
    def room(self) -> str:
        return self.session.me.room


#: returns the reply content, or None when the tool has answered itself (ToolContext.reply)
Tool = Callable[[ToolContext, Content], Awaitable[Content | None]]
TOOLS: dict[tuple[str, str], Tool] = {}
#: Gen-1 message types that are calls of a tool of this table
GEN1_TYPES: dict[str, tuple[str, str]] = {}


def tool(toolkit: str, name: str, *, gen1: bool = True) -> Callable[[Tool], Tool]:
    def register(fn: Tool) -> Tool:
        TOOLS[(toolkit, name)] = fn
        if gen1:
            GEN1_TYPES[f"{toolkit}.{name}"] = (toolkit, name)
        return fn

    return register


def gen1_content(header: dict[str, Any], trailer: bytes) -> Content:
    """A Gen-1 request as the content a tool takes: the header holds the fields, the trailer the bytes."""
    return BinaryContent(header, trailer)


# -- reading fields from a content -------------------------------------------------------------


def fields(content: Content) -> dict[str, Any]:
    """The named fields of a request: a json content's object, or a binary content's headers.

    Raises:
        InvalidRequest: any other content, or json that is not an object.
    """
    if isinstance(content, JsonContent):
        if not isinstance(content.json, dict):
            raise InvalidRequest("the tool input must be a JSON object")
        return content.json
    if isinstance(content, BinaryContent):
        return content.headers
    raise InvalidRequest("the tool input must be a json or binary content")
