"""A minimal MeshAgent wire client built on roomsvc's own framing and packing modules.

For protocol edge cases the SDK never produces (Gen-1 message types, broken packets,
text frames); the SDK itself is driven from ``drivers/``.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp

from roomsvc.transport.meshagent.framing import Message, PacketAssembler, encode_packets
from roomsvc.transport.meshagent.packing import Content, content_data, content_header, pack, unpack, unpack_content


class RawClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        self.ws = ws
        self._session = session
        self._ids = itertools.count(1)
        self._assembler = PacketAssembler(max_payload=1 << 24)
        self.pushes: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[Content]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.ready: dict[str, Any] = {}
        self.init: dict[str, Any] = {}

    @classmethod
    async def connect(cls, base_url: str, room: str, token: str) -> RawClient:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(f"{base_url}/rooms/{room}", headers={"Authorization": f"Bearer {token}"})
        except BaseException:
            await session.close()  # a refused upgrade must not leak the session
            raise
        client = cls(ws, session)
        client._reader = asyncio.get_running_loop().create_task(client._read())
        client.ready = unpack((await client.push("room_ready")).payload)[0]
        client.init = unpack((await client.push("connected")).payload)[0]
        return client

    @property
    def participant_id(self) -> str:
        return self.init["participantId"]

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            message = self._assembler.feed(msg.data)
            if message is None:
                continue
            waiter = self._replies.pop(message.id, None) if message.type == "__response__" else None
            if waiter is not None:
                waiter.set_result(unpack_content(message.payload))
            else:
                self.pushes.put_nowait(message)

    async def push(self, message_type: str, *, timeout: float = 5) -> Message:
        while True:
            message = await asyncio.wait_for(self.pushes.get(), timeout)
            if message.type == message_type:
                return message

    async def send_raw(self, message_type: str, payload: bytes) -> int:
        message_id = next(self._ids)
        for packet in encode_packets(message_id, message_type, payload):
            await self.ws.send_bytes(packet)
        return message_id

    async def request(self, message_type: str, header: dict[str, Any], trailer: bytes = b"", *, timeout: float = 5) -> Content:
        message_id = next(self._ids)
        waiter: asyncio.Future[Content] = asyncio.get_running_loop().create_future()
        self._replies[message_id] = waiter
        for packet in encode_packets(message_id, message_type, pack(header, trailer)):
            await self.ws.send_bytes(packet)
        return await asyncio.wait_for(waiter, timeout)

    async def invoke(self, toolkit: str, tool: str, content: Content) -> Content:
        header = {"toolkit": toolkit, "tool": tool, "participant_id": None, "on_behalf_of_id": None,
                  "arguments": content_header(content), "tool_call_id": "t1", "__meshagent__": {"v": 1, "otel": {}}}
        return await self.request("room.invoke_tool", header, content_data(content))

    async def invoke_hosted(self, toolkit: str, tool: str, participant_id: str, content: Content, *,
                            timeout: float = 5) -> Content:
        """``room.invoke_tool`` of a toolkit another participant hosts (issue 17: the MCP bridge)."""
        header = {"toolkit": toolkit, "tool": tool, "participant_id": participant_id, "on_behalf_of_id": None,
                  "arguments": content_header(content), "tool_call_id": "t2", "__meshagent__": {"v": 1, "otel": {}}}
        return await self.request("room.invoke_tool", header, content_data(content), timeout=timeout)

    async def wait_closed(self, *, timeout: float = 5) -> int | None:
        """Wait for the server to close the socket; its close code."""
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._session.close()
