"""Fakes shared by the tests, one of each, behind the same ports the real things implement.

- :class:`FakeVault`: the refresher's credential store (load / save with a version check).
- :class:`FakeProvider`: an OAuth provider's token endpoint that answers from a script.
- :class:`FakeRooms`: the room records a :class:`~roomsvc.domain.rooms.RoomService` reads.
- :class:`FakeConnection`: a MeshAgent connection that reassembles the packets it is sent.
- :class:`Sink`: a participant's delivery target that records every event.

Time is never slept here: a fake that must let other tasks run yields to the event loop
(:func:`yield_to_others`); tests move a :class:`~roomsvc.clock.FakeClock` instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from roomsvc.domain.events import RoomEvent
from roomsvc.domain.oauth.credentials import OAuthCredential, TokenResponse
from roomsvc.domain.oauth.ports import ClientAuth
from roomsvc.domain.oauth.refresh import StoredCredential
from roomsvc.domain.ports import RoomRecord
from roomsvc.domain.secrets import Address
from roomsvc.errors import Conflict
from roomsvc.ids import RoomName
from roomsvc.transport.meshagent.framing import PacketAssembler
from roomsvc.transport.meshagent.packing import unpack

N = TypeVar("N")

#: how long a test waits for an event that should come (a failure bound, not a timing check)
EVENT_WAIT = 10.0


async def yield_to_others(times: int = 3) -> None:
    """Let every other ready task run a step (a zero-length sleep is asyncio's yield)."""
    for _ in range(times):
        await asyncio.sleep(0)


class FakeVault:
    """One stored OAuth credential with a version, as the refresher's vault port sees it."""

    def __init__(self, credential: OAuthCredential) -> None:
        self.version = 1
        self.credential = credential
        self.writes = 0

    async def load(self, addr: Address) -> StoredCredential | None:
        await yield_to_others(1)
        return StoredCredential(addr, self.version, self.credential)

    async def save(self, addr: Address, credential: OAuthCredential, *, expected_version: int) -> StoredCredential:
        if expected_version != self.version:
            raise Conflict("version moved")
        self.version += 1
        self.credential = credential
        self.writes += 1
        return StoredCredential(addr, self.version, credential)


class FakeProvider:
    """A token endpoint answering from a script; the last answer repeats. Each call yields
    to the event loop before it answers, so concurrent callers really overlap."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def refresh(self, token_endpoint: str, auth: ClientAuth, *, refresh_token: str) -> TokenResponse:
        self.calls.append(refresh_token)
        await yield_to_others()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


class FakeRooms:
    """Every room exists: the room records a RoomService reads and creates."""

    async def get_room(self, name: RoomName) -> RoomRecord | None:
        return RoomRecord(name, 0.0)

    async def ensure_room(self, name: RoomName, *, created_at: float) -> RoomRecord:
        return RoomRecord(name, created_at)


class FakeConnection:
    """A MeshAgent connection: collects packets as the single writer would send them."""

    def __init__(self) -> None:
        self.assembler = PacketAssembler(max_payload=1 << 20)
        self.pushes: list[tuple[str, dict[str, Any], bytes]] = []

    def send_nowait(self, packet: bytes) -> None:
        message = self.assembler.feed(packet)
        if message is not None:
            header, trailer = unpack(message.payload)
            self.pushes.append((message.type, header, trailer))

    def take(self) -> list[dict[str, Any]]:
        """The messaging.send headers since the last call."""
        out = [h for t, h, _ in self.pushes if t == "messaging.send"]
        self.pushes.clear()
        return out


class Sink:
    """A participant's delivery target: keeps every event, and lets a test wait for a notice."""

    def __init__(self) -> None:
        self.events: list[RoomEvent] = []
        self._queue: asyncio.Queue[RoomEvent] = asyncio.Queue()

    def deliver(self, event: RoomEvent) -> None:
        self.events.append(event)
        self._queue.put_nowait(event)

    async def notice(self, kind: type[N]) -> N:
        """The next event of that notice type (SecretRequested, RequestEnded, ...)."""
        while True:
            event = await asyncio.wait_for(self._queue.get(), EVENT_WAIT)
            if isinstance(event, kind):
                return event
