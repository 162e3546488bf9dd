"""MeshAgent packet framing, free of I/O: messages to websocket packets and back.

A message travels as one *start packet* followed by N *data packets*, each its own
binary websocket frame (all integers big-endian)::

    start:  message id (u64) | index 0 (u32) | N (u32) | message type (UTF-8)
    data i: message id (u64) | index i (u32) | payload[(i-1)*1024 : i*1024]

N is ``ceil(len(payload) / 1024)``; N = 0 is an empty payload, complete at once. The
receiver keeps one reassembly state per connection, so the packets of two messages must
never interleave: the sender writes every message through one queue with one writer
(:class:`~roomsvc.transport.ws.connection.Connection`), and :func:`encode_packets`
returns a message's packets as one list for that queue.

:class:`PacketAssembler` is the receiving half as a state machine fed with bytes. Unlike
the SDK, which logs and silently drops a broken message, it raises :class:`FramingError`
so the connection can count strikes, and it bounds what a peer can make it buffer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NoReturn

from roomsvc.errors import FramingError, MessageTooLarge

PACKET_SIZE = 1024
START_HEADER = 16
DATA_HEADER = 12
#: message types are short ASCII names (``room.invoke_tool``, ``messaging.send``)
MAX_TYPE_BYTES = 256
#: the largest websocket frame a well-behaved peer sends
MAX_FRAME = START_HEADER + max(MAX_TYPE_BYTES, PACKET_SIZE)


@dataclass(frozen=True)
class Message:
    """A reassembled message: id, type and packed payload."""

    id: int
    type: str
    payload: bytes = field(repr=False)  # may hold a secret value


def packet_count(payload_size: int) -> int:
    return -(-payload_size // PACKET_SIZE)


def encode_packets(message_id: int, message_type: str, payload: bytes) -> list[bytes]:
    """The packets of one message, to be written back to back."""
    kind = message_type.encode()
    if not 0 <= message_id < 2**64:
        raise ValueError("message id must fit in 64 bits")
    if len(kind) > MAX_TYPE_BYTES:
        raise ValueError("message type too long")
    count = packet_count(len(payload))
    prefix = message_id.to_bytes(8, "big")
    packets = [prefix + (0).to_bytes(4, "big") + count.to_bytes(4, "big") + kind]
    for index in range(1, count + 1):
        chunk = payload[(index - 1) * PACKET_SIZE : index * PACKET_SIZE]
        packets.append(prefix + index.to_bytes(4, "big") + chunk)
    return packets


class _State(enum.Enum):
    READY = "ready"  # waiting for a start packet
    RECEIVING = "receiving"  # collecting the data packets of one message
    SKIPPING = "skipping"  # discarding the data packets of a refused message


class PacketAssembler:
    """Turns incoming packets into :class:`Message` values, one message at a time.

    Args:
        max_payload: the largest payload accepted (``websocket.max_message_size``).
    """

    def __init__(self, *, max_payload: int) -> None:
        self._max_payload = max_payload
        self._reset()

    def _reset(self) -> None:
        self._state = _State.READY
        self._id = -1
        self._type = ""
        self._expected = 0
        self._next = 0
        self._parts: list[bytes] = []

    @property
    def idle(self) -> bool:
        """True between messages (nothing half-received)."""
        return self._state is _State.READY

    def feed(self, packet: bytes) -> Message | None:
        """Take one packet; return the message it completes, if any.

        Raises:
            FramingError: a malformed, out-of-order or interleaved packet. The partial
                message is dropped and the assembler waits for the next start packet.
            MessageTooLarge: the announced payload exceeds ``max_payload``; its data
                packets are skipped.
        """
        if len(packet) < DATA_HEADER:
            self._fail(f"a packet of {len(packet)} bytes is shorter than its header")
        message_id = int.from_bytes(packet[0:8], "big")
        index = int.from_bytes(packet[8:12], "big")
        if index == 0:
            return self._start(message_id, packet)
        return self._data(message_id, index, packet[DATA_HEADER:])

    # -- transitions ------------------------------------------------------------------

    def _start(self, message_id: int, packet: bytes) -> Message | None:
        if self._state is _State.RECEIVING:
            self._fail(f"message {message_id} started before message {self._id} was complete")
        if len(packet) < START_HEADER:
            self._fail("a start packet is shorter than 16 bytes")
        count = int.from_bytes(packet[12:16], "big")
        raw_type = packet[START_HEADER:]
        if not raw_type or len(raw_type) > MAX_TYPE_BYTES:
            self._fail(f"a message type must be 1-{MAX_TYPE_BYTES} bytes")
        try:
            message_type = raw_type.decode("ascii")
        except UnicodeDecodeError:
            self._fail("a message type must be ASCII")
        if not message_type.isprintable():
            self._fail("a message type must be printable")
        if count > packet_count(self._max_payload):
            self._state, self._id, self._expected, self._next = _State.SKIPPING, message_id, count, 1
            raise MessageTooLarge(
                f"message of up to {count * PACKET_SIZE} bytes is above the limit of {self._max_payload} "
                "(websocket.max_message_size)",
                message_id=message_id,
                message_type=message_type,
            )
        if count == 0:
            self._reset()
            return Message(message_id, message_type, b"")
        self._state, self._id, self._type, self._expected, self._next = (
            _State.RECEIVING, message_id, message_type, count, 1,
        )
        self._parts = []
        return None

    def _data(self, message_id: int, index: int, chunk: bytes) -> Message | None:
        if self._state is _State.READY:
            self._fail(f"data packet {index} of message {message_id} without a start packet")
        if message_id != self._id:
            self._fail(f"data packet of message {message_id} inside message {self._id}")
        if index != self._next:
            self._fail(f"packet {index} of message {message_id} arrived, expected {self._next}")
        last = index == self._expected
        if len(chunk) > PACKET_SIZE or (not last and len(chunk) != PACKET_SIZE) or not chunk:
            self._fail(f"packet {index} of message {message_id} has {len(chunk)} payload bytes")
        if self._state is _State.SKIPPING:
            if last:
                self._reset()
            else:
                self._next += 1
            return None
        self._parts.append(chunk)
        if not last:
            self._next += 1
            return None
        message = Message(self._id, self._type, b"".join(self._parts))
        self._reset()
        return message

    def _fail(self, reason: str) -> NoReturn:
        self._reset()
        raise FramingError(reason)
