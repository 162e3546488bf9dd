"""Presence announcements of one native connection, coalesced.

The first announcement (``participant.joined`` / ``updated`` / ``left``) goes out at once
and opens a window of ``websocket.presence_coalesce`` seconds; announcements arriving
within it are netted per participant (joined then left = nothing; joined then updated =
joined with the new attributes; updated then left = both) and sent as one ``participants.changed`` frame when the
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
        #: kind -> participant id -> encoded participant, in arrival order
        self._pending: dict[str, dict[str, str]] = {"joined": {}, "updated": {}, "left": {}}
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, event: PresenceEvent) -> None:
        kind = KINDS[type(event)]
        encoded = codec.participant_json(event)
        if self._timer is None or self._window <= 0:
            self._send(codec.presence_frame(kind, encoded))
            if self._window > 0:
                self._timer = asyncio.get_running_loop().call_later(self._window, self._tick)
            return
        pid = event.participant.id
        joined = self._pending["joined"]
        if pid in joined:
            if kind == "left":  # never announced to this connection: nothing to say
                del joined[pid]
                self._count -= 1
            else:
                joined[pid] = encoded  # announced once, with its latest attributes
            return
        bucket = self._pending[kind]
        if pid not in bucket:
            self._count += 1
        bucket[pid] = encoded

    def flush(self) -> None:
        """Send what is pending now (before any other frame)."""
        if not self._count:
            return
        pending, count = self._pending, self._count
        self._pending, self._count = {"joined": {}, "updated": {}, "left": {}}, 0
        if count == 1:
            for kind, bucket in pending.items():
                for encoded in bucket.values():
                    self._send(codec.presence_frame(kind, encoded))
            return
        self._send(codec.changed_frame(
            list(pending["joined"].values()), list(pending["updated"].values()), list(pending["left"].values())
        ))

    def _tick(self) -> None:
        if not self._count:
            self._timer = None  # a quiet window: the next announcement goes out at once
            return
        self.flush()
        self._timer = asyncio.get_running_loop().call_later(self._window, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending, self._count = {"joined": {}, "updated": {}, "left": {}}, 0
