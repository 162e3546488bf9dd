"""Presence announcements of one native connection, coalesced.

The first announcement (``participant.joined`` / ``updated`` / ``left``) goes out at once
and opens a window of ``websocket.presence_coalesce`` seconds; announcements arriving
within it are netted per participant (joined then left = nothing; joined then updated =
joined with the new attributes) and sent as one ``participants.changed`` frame when the
window closes (a window holding a single announcement sends that announcement's own
frame). A window with nothing in it ends the coalescing. So 2,000 participants joining
within seconds cost each member a few dozen frames, not 2,000, and the bounded outbound
queue and the slow-consumer close stay as they are.

Any other frame for the connection first flushes what is pending, so presence is never
reordered with messages or answers (a message from a participant still comes after its
``joined``). Each participant's JSON is encoded once per announcement
(:func:`~roomsvc.transport.ws.codec.participant_json`), not once per receiver.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from roomsvc.domain.events import ParticipantJoined, ParticipantLeft, ParticipantUpdated
from roomsvc.transport.ws import codec

PresenceEvent = ParticipantJoined | ParticipantLeft | ParticipantUpdated

KINDS = {ParticipantJoined: "joined", ParticipantUpdated: "updated", ParticipantLeft: "left"}


class PresenceBuffer:
    def __init__(self, window: float, send: Callable[[str], None]) -> None:
        self._window = window
        self._send = send
        #: participant id -> (kind, encoded participant), in arrival order
        self._pending: dict[str, tuple[str, str]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, event: PresenceEvent) -> None:
        kind = KINDS[type(event)]
        encoded = codec.participant_json(event)
        if self._window <= 0 or self._timer is None:
            self._send(codec.presence_frame(kind, encoded))
            if self._window > 0:
                self._timer = asyncio.get_running_loop().call_later(self._window, self._tick)
            return
        pid = event.participant.id
        before = self._pending.get(pid)
        if before is not None and before[0] == "joined":
            if kind == "left":
                del self._pending[pid]  # never announced to this connection: nothing to say
            else:
                self._pending[pid] = ("joined", encoded)
            return
        self._pending[pid] = (kind, encoded)

    def flush(self) -> None:
        """Send what is pending now (before any other frame)."""
        pending = self._pending
        if not pending:
            return
        self._pending = {}
        if len(pending) == 1:
            (kind, encoded), = pending.values()
            self._send(codec.presence_frame(kind, encoded))
            return
        lists: dict[str, list[str]] = {"joined": [], "updated": [], "left": []}
        for kind, encoded in pending.values():
            lists[kind].append(encoded)
        self._send(codec.changed_frame(lists["joined"], lists["updated"], lists["left"]))

    def _tick(self) -> None:
        if not self._pending:
            self._timer = None  # a quiet window: the next announcement goes out at once
            return
        self.flush()
        self._timer = asyncio.get_running_loop().call_later(self._window, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = {}
