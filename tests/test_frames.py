"""The native transport's frame reader and writer (``trioapi.protocol``), against RFC 6455.

Well-formed traffic is produced by wsproto's client (an independent
implementation) and fed in arbitrary pieces; each rule the RFC makes a server
enforce has a frame that breaks it and the close code it must get.
"""

from __future__ import annotations

import os
import random
import struct
from collections import deque

import pytest
from wsproto.connection import CLIENT, Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from trioapi.protocol import CLOSE, PING, PONG, FrameReader, ProtocolError, close_frame, frame
from trioapi.protocol import reader as _frames


def masked(first: int, payload: bytes, *, length_bytes: bytes | None = None, mask: bool = True) -> bytes:
    """A client frame with header byte ``first``, built by hand to break rules on purpose."""
    size = len(payload)
    if length_bytes is not None:
        header = bytes((first,)) + length_bytes
    elif size < 126:
        header = bytes((first, size))
    elif size < 65536:
        header = bytes((first, 126)) + struct.pack("!H", size)
    else:
        header = bytes((first, 127)) + struct.pack("!Q", size)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return (
        bytes((header[0], header[1] | 0x80))
        + header[2:]
        + key
        + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    )


def feed_in_pieces(reader: FrameReader, data: bytes, rng: random.Random) -> tuple[list[str | bytes], list]:
    inbox: deque[str | bytes] = deque()
    controls: list = []
    pos = 0
    for _ in range(len(data) + 1):  # at most one piece per byte
        if pos >= len(data):
            break
        step = rng.randint(1, 40) if rng.random() < 0.7 else rng.randint(1, len(data))
        got = reader.feed(data[pos : pos + step], inbox)
        controls.extend(got or ())
        pos += step
    return list(inbox), controls


@pytest.fixture(params=["C unmasking", "Python unmasking"])
def unmasking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of unmasking: websockets' C function (the test extra has it) and the fallback."""
    assert _frames._c_apply_mask is not None
    if request.param == "Python unmasking":
        monkeypatch.setattr(_frames, "_c_apply_mask", None)
    return str(request.param)


def test_wsproto_client_traffic_in_random_pieces_comes_out_whole(unmasking: str) -> None:
    rng = random.Random(6455)
    for _ in range(150):
        client = Connection(CLIENT)
        expected: list[str | bytes] = []
        expected_controls: list = []
        wire = b""
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.5:
                text = "".join(rng.choice("aé€😀\n") for _ in range(rng.randint(0, 300)))
                pieces = [text[i : i + 7] for i in range(0, len(text), 7)] or [""]
                message: str | bytes = text
                events = [
                    TextMessage(data=p, message_finished=i == len(pieces) - 1) for i, p in enumerate(pieces)
                ]
            else:
                data = rng.randbytes(rng.choice((0, 5, 125, 126, 300, 70_000)))
                cut = rng.randint(0, len(data))
                message = data
                events = [
                    BytesMessage(data=data[:cut], message_finished=False),
                    BytesMessage(data=data[cut:]),
                ]
            if rng.random() < 0.3 and len(events) > 1:  # a ping between fragments is allowed
                events.insert(1, Ping(payload=b"between"))
                expected_controls.append((PING, b"between"))
            for event in events:
                wire += client.send(event)
            expected.append(message)
        wire += client.send(Pong(payload=b"late"))
        expected_controls.append((PONG, b"late"))
        wire += client.send(CloseConnection(code=4000, reason="bye ✓"))
        expected_controls.append((CLOSE, (4000, "bye ✓")))
        messages, controls = feed_in_pieces(FrameReader(1 << 20), wire, rng)
        assert messages == expected
        assert controls == expected_controls


def test_nothing_is_read_after_a_close_frame() -> None:
    reader = FrameReader(100)
    inbox: deque[str | bytes] = deque()
    controls = reader.feed(masked(0x88, struct.pack("!H", 1000)) + masked(0x81, b"after"), inbox)
    assert controls == [(CLOSE, (1000, ""))]
    assert reader.feed(masked(0x81, b"later"), inbox) is None
    assert not inbox


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (masked(0xC1, b"rsv1"), 1002),
        (masked(0xA1, b"rsv2"), 1002),
        (masked(0x91, b"rsv3"), 1002),
        (masked(0x81, b"unmasked", mask=False), 1002),
        (masked(0x83, b"reserved data opcode"), 1002),
        (masked(0x8B, b"reserved control opcode"), 1002),
        (masked(0x80, b"continuation of nothing"), 1002),
        (masked(0x01, b"start") + masked(0x81, b"a new message inside it"), 1002),
        (masked(0x09, b"fragmented ping"), 1002),
        (masked(0x89, b"p" * 126), 1002),
        (masked(0x81, b"short", length_bytes=b"\x7e\x00\x05"), 1002),  # 16-bit length for 5 bytes
        (masked(0x82, b"x" * 200, length_bytes=b"\x7f" + struct.pack("!Q", 200)), 1002),
        (masked(0x88, b"\x03"), 1002),  # a one-byte close payload
        (masked(0x88, struct.pack("!H", 999)), 1002),
        (masked(0x88, struct.pack("!H", 1005)), 1002),
        (masked(0x88, struct.pack("!H", 1006)), 1002),
        (masked(0x88, struct.pack("!H", 2000)), 1002),
        (masked(0x88, struct.pack("!H", 5000)), 1002),
        (masked(0x88, struct.pack("!H", 4000) + b"\xff"), 1007),
        (masked(0x81, b"caf\xc3"), 1007),  # truncated UTF-8
        (masked(0x81, b"\xed\xa0\x80"), 1007),  # an encoded surrogate
        (masked(0x01, b"ok ") + masked(0x80, b"\xff then more"), 1007),  # fails in its fragment
        (masked(0x01, b"caf\xc3"), None),  # fine so far: the sequence may end in the next fragment
        (masked(0x01, b"caf\xc3") + masked(0x80, b""), 1007),  # ...but it does not
        (masked(0x82, b"b" * 101), 1009),
        (masked(0x02, b"b" * 60) + masked(0x80, b"b" * 41), 1009),
        (masked(0x81, "é".encode() * 101), 1009),  # 101 characters
    ],
)
def test_what_the_rfc_refuses_gets_its_close_code(wire: bytes, code: int | None, unmasking: str) -> None:
    reader = FrameReader(100)
    inbox: deque[str | bytes] = deque()
    if code is None:
        assert reader.feed(wire, inbox) is None
        assert not inbox
        return
    with pytest.raises(ProtocolError) as info:
        reader.feed(wire, inbox)
    assert info.value.code == code
    assert reader.feed(masked(0x81, b"anything"), inbox) is None  # nothing after an error
    assert not inbox


def test_the_size_limit_counts_text_in_characters_and_is_known_from_the_header() -> None:
    reader = FrameReader(100)
    inbox: deque[str | bytes] = deque()
    reader.feed(masked(0x81, "é".encode() * 100), inbox)  # 200 bytes, 100 characters: fine
    assert inbox.popleft() == "é" * 100
    header_only = masked(0x82, b"z" * 5000)[:8]  # the payload never needs to arrive
    with pytest.raises(ProtocolError) as info:
        reader.feed(header_only, inbox)
    assert info.value.code == 1009


def test_server_frames_are_what_wsproto_reads() -> None:
    client = Connection(CLIENT)  # server frames are read by a client
    payloads = [b"", b"x" * 125, b"x" * 126, b"x" * 65535, b"x" * 65536]
    for payload in payloads:
        client.receive_data(frame(0x2, payload))
    client.receive_data(close_frame(4001, "ü" * 100))  # 200 bytes: cut to 123 at a character boundary
    events = list(client.events())
    assert [e.data for e in events[:-1]] == payloads
    assert events[-1] == CloseConnection(code=4001, reason="ü" * 61)
    assert close_frame(1005) == b"\x88\x00"  # "no code" is answered with no code
    assert close_frame(1006)[2:4] == struct.pack("!H", 1000)  # local-only codes are never sent
