"""Packet framing, fed as bytes: no event loop, no socket."""

from __future__ import annotations

import pytest

from roomsvc.transport.meshagent.framing import (
    PACKET_SIZE,
    FramingError,
    Message,
    MessageTooLarge,
    PacketAssembler,
    encode_packets,
)


def feed_all(assembler: PacketAssembler, packets: list[bytes]) -> list[Message]:
    return [m for m in (assembler.feed(p) for p in packets) if m is not None]


def test_start_packet_layout_matches_the_sdk() -> None:
    packets = encode_packets(7, "room.invoke_tool", b"x" * 2049)
    assert packets[0] == (7).to_bytes(8, "big") + (0).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"room.invoke_tool"
    assert [len(p) for p in packets[1:]] == [12 + 1024, 12 + 1024, 12 + 1]
    assert [int.from_bytes(p[8:12], "big") for p in packets] == [0, 1, 2, 3]
    assert all(p[:8] == (7).to_bytes(8, "big") for p in packets)


@pytest.mark.parametrize("size", [0, 1, PACKET_SIZE - 1, PACKET_SIZE, PACKET_SIZE + 1, 3000, 5 * PACKET_SIZE])
def test_round_trip_at_packet_boundaries(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    packets = encode_packets(2**40 + 1, "messaging.send", payload)
    assert len(packets) == 1 + -(-size // PACKET_SIZE)
    assembler = PacketAssembler(max_payload=1 << 20)
    assert feed_all(assembler, packets) == [Message(2**40 + 1, "messaging.send", payload)]
    assert assembler.idle


def test_an_empty_payload_completes_on_the_start_packet() -> None:
    assembler = PacketAssembler(max_payload=1024)
    assert assembler.feed(encode_packets(1, "__response__", b"")[0]) == Message(1, "__response__", b"")


def test_messages_follow_each_other() -> None:
    packets = encode_packets(1, "a", b"1" * 1500) + encode_packets(2, "b", b"") + encode_packets(3, "c", b"3")
    assert [(m.id, m.type, len(m.payload)) for m in feed_all(PacketAssembler(max_payload=4096), packets)] == [
        (1, "a", 1500), (2, "b", 0), (3, "c", 1),
    ]


def test_interleaved_messages_are_refused_and_the_next_start_recovers() -> None:
    first = encode_packets(1, "a", b"x" * 2000)
    second = encode_packets(2, "b", b"y" * 10)
    assembler = PacketAssembler(max_payload=4096)
    assembler.feed(first[0])
    with pytest.raises(FramingError, match="before message 1 was complete"):
        assembler.feed(second[0])
    assert assembler.idle
    assert feed_all(assembler, second) == [Message(2, "b", b"y" * 10)]


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda p: [p[0], p[2]], "arrived, expected 1"),
        (lambda p: [p[0], (9).to_bytes(8, "big") + p[1][8:]], "inside message 1"),
        (lambda p: [p[1]], "without a start packet"),
        (lambda p: [p[0], p[1][:100]], "payload bytes"),
        (lambda p: [b"\x00" * 5], "shorter than its header"),
        (lambda p: [p[0][:16]], "1-256 bytes"),
        (lambda p: [p[0][:16] + "é".encode()], "ASCII"),
    ],
)
def test_broken_packets_raise_framing_errors(mangle, reason: str) -> None:
    assembler = PacketAssembler(max_payload=4096)
    with pytest.raises(FramingError, match=reason):
        feed_all(assembler, mangle(encode_packets(1, "a", b"z" * 2048)))
    assert assembler.idle


def test_an_oversized_message_is_named_and_its_data_packets_skipped() -> None:
    assembler = PacketAssembler(max_payload=2048)
    big = encode_packets(5, "room.invoke_tool", b"q" * 3000)
    with pytest.raises(MessageTooLarge) as caught:
        assembler.feed(big[0])
    assert (caught.value.message_id, caught.value.message_type) == (5, "room.invoke_tool")
    assert feed_all(assembler, big[1:]) == []
    assert feed_all(assembler, encode_packets(6, "ok", b"!")) == [Message(6, "ok", b"!")]


def test_message_repr_hides_the_payload() -> None:
    assert "hunter2" not in repr(Message(1, "x", b"hunter2"))
