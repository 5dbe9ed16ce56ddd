"""The native transport's sans-I/O protocol (``trioapi.protocol``), fed bytes without sockets.

- the close handshake as a state machine: named states, one transition
  table, a clear error for what cannot happen;
- permessage-deflate (RFC 7692): the negotiation, compressed traffic both
  ways against wsproto's client (an independent implementation), RSV1's
  rules, and inflation that stops at the message limit;
- the frame reader's bounds: a fragment costs nothing but its bytes, a
  payload arriving in small reads is taken as it comes, and invalid UTF-8 is
  refused at the read that brings it.
"""

from __future__ import annotations

import random
import tracemalloc
import zlib
from collections import deque

import pytest
from test_frames import feed_in_pieces, masked
from wsproto.connection import CLIENT, Connection
from wsproto.events import BytesMessage, Message, TextMessage
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

from trioapi.protocol import (
    CloseEvent,
    CloseHandshake,
    ConnectionState,
    FrameReader,
    IllegalTransition,
    ProtocolError,
    message_frame,
    negotiate,
)
from trioapi.protocol import reader as reader_module

S = ConnectionState
E = CloseEvent

# -- the close handshake ---------------------------------------------------------


def run(events: list[CloseEvent]) -> CloseHandshake:
    machine = CloseHandshake()
    for event in events:
        machine.transition(event)
    return machine


@pytest.mark.parametrize(
    ("events", "state"),
    [
        ([], S.CONNECTING),
        ([E.ACCEPT], S.OPEN),
        ([E.REJECT], S.REJECTED),
        ([E.ACCEPT, E.SEND_CLOSE], S.LOCAL_CLOSING),
        ([E.ACCEPT, E.SEND_CLOSE, E.RECEIVE_CLOSE], S.CLOSED),
        ([E.ACCEPT, E.RECEIVE_CLOSE], S.REMOTE_CLOSING),
        ([E.ACCEPT, E.RECEIVE_CLOSE, E.SEND_CLOSE], S.CLOSED),
        ([E.ACCEPT, E.FAIL], S.LOCAL_CLOSING),
        ([E.ACCEPT, E.SEND_CLOSE, E.FAIL], S.CLOSED),
        ([E.ACCEPT, E.LOSE], S.CLOSED),
        ([E.LOSE], S.CLOSED),
        ([E.ACCEPT, E.LOSE, E.RECEIVE_CLOSE, E.FAIL, E.LOSE], S.CLOSED),
    ],
)
def test_each_event_leads_to_the_state_rfc_6455_names(
    events: list[CloseEvent], state: ConnectionState
) -> None:
    assert run(events).state is state


@pytest.mark.parametrize(
    ("events", "illegal"),
    [
        ([], E.SEND_CLOSE),
        ([], E.RECEIVE_CLOSE),
        ([E.ACCEPT], E.ACCEPT),
        ([E.ACCEPT], E.REJECT),
        ([E.ACCEPT, E.SEND_CLOSE], E.SEND_CLOSE),
        ([E.ACCEPT, E.RECEIVE_CLOSE], E.RECEIVE_CLOSE),
        ([E.REJECT], E.ACCEPT),
    ],
)
def test_an_event_that_cannot_happen_raises_naming_event_and_state(
    events: list[CloseEvent], illegal: CloseEvent
) -> None:
    machine = run(events)
    before = machine.state
    with pytest.raises(IllegalTransition, match=f"cannot {illegal.value} in state '{before.value}'"):
        machine.transition(illegal)
    assert machine.state is before


def test_the_first_reason_for_the_end_is_kept() -> None:
    machine = run([E.ACCEPT])
    machine.transition(E.FAIL, (1007, ""), now=5.0)
    machine.transition(E.LOSE, (1006, ""))
    assert machine.reason == (1007, "")


def test_our_close_is_overdue_only_after_the_timeout_and_only_while_unanswered() -> None:
    machine = run([E.ACCEPT])
    machine.transition(E.SEND_CLOSE, now=10.0)
    assert not machine.overdue(11.9, timeout=2.0)
    assert machine.overdue(12.1, timeout=2.0)
    machine.transition(E.RECEIVE_CLOSE, (1000, ""))
    assert not machine.overdue(99.0, timeout=2.0)
    assert machine.reason == (1000, "")


# -- permessage-deflate: the negotiation -----------------------------------------------


@pytest.mark.parametrize(
    ("offers", "response"),
    [
        (["permessage-deflate"], "permessage-deflate"),
        # What browsers send: they let us choose their window.
        (["permessage-deflate; client_max_window_bits"], "permessage-deflate; client_max_window_bits=12"),
        (["permessage-deflate; client_max_window_bits=9"], "permessage-deflate; client_max_window_bits=9"),
        (
            ['permessage-deflate; client_max_window_bits="10"'],
            "permessage-deflate; client_max_window_bits=10",
        ),
        (["permessage-deflate; server_max_window_bits=10"], "permessage-deflate; server_max_window_bits=10"),
        (["permessage-deflate; server_max_window_bits=15"], "permessage-deflate; server_max_window_bits=12"),
        (
            ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            ["PerMessage-Deflate ;  Server_No_Context_Takeover"],
            "permessage-deflate; server_no_context_takeover",
        ),
        # The first offer we can honour wins; the others are declined.
        (
            ["x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=8", "permessage-deflate"],
            "permessage-deflate",
        ),
        (["permessage-deflate; unknown_parameter"], None),
        (["permessage-deflate; server_max_window_bits"], None),  # a value is required there
        (["permessage-deflate; client_max_window_bits=16"], None),
        (["permessage-deflate; client_max_window_bits=08"], None),
        (["permessage-deflate; server_no_context_takeover=1"], None),
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        (["permessage-deflate; server_max_window_bits=8"], None),  # zlib cannot compress with 256 bytes
        (["x-webkit-deflate-frame"], None),
        ([], None),
    ],
)
def test_the_first_offer_we_can_honour_is_accepted_as_rfc_7692_says(
    offers: list[str], response: str | None
) -> None:
    agreed = negotiate(offers)
    assert (agreed.response if agreed else None) == response


# -- permessage-deflate: traffic both ways -------------------------------------------


def wsproto_client(response: str) -> Connection:
    """wsproto's client with permessage-deflate as our ``response`` agreed it."""
    extension = WsprotoDeflate()
    extension.finalize(response)
    return Connection(CLIENT, extensions=[extension])


OFFERS = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
]


@pytest.mark.parametrize("offer", OFFERS)
def test_compressed_client_traffic_in_random_pieces_comes_out_whole(offer: str) -> None:
    agreed = negotiate([offer])
    assert agreed is not None
    rng = random.Random(7692)
    client = wsproto_client(agreed.response)
    expected: list[str | bytes] = []
    wire = b""
    for n in range(60):
        if n % 2:
            text = "".join(rng.choice("ab é€😀{}\n") for _ in range(rng.randint(0, 3000)))
            cut = rng.randint(0, len(text))
            events: list[Message[str] | Message[bytes]] = [
                TextMessage(data=text[:cut], message_finished=False),
                TextMessage(data=text[cut:]),
            ]
            expected.append(text)
        else:
            data = rng.choice((b"", rng.randbytes(100), b"json " * rng.randint(1, 20_000)))
            events = [BytesMessage(data=data)]
            expected.append(data)
        for event in events:
            wire += client.send(event)
    reader = FrameReader(1 << 20, agreed.inflater())
    messages, controls = feed_in_pieces(reader, wire, rng)
    assert messages == expected
    assert controls == []


@pytest.mark.parametrize("offer", OFFERS)
def test_our_compressed_frames_are_what_wsproto_reads(offer: str) -> None:
    agreed = negotiate([offer])
    assert agreed is not None
    client = wsproto_client(agreed.response)
    deflater = agreed.deflater()
    sent: list[str | bytes] = ["hello", "hello", b"\x00" * 70_000, "é" * 40, b"", ""]
    for message in sent:
        client.receive_data(message_frame(message, deflater))
    deflater.reset()  # a frame that was never sent: what follows refers to none of it
    client.receive_data(message_frame("after a reset, " * 10, deflater))
    got = [event.data for event in client.events()]
    assert got == [*sent, "after a reset, " * 10]
    assert len(message_frame(b"\x00" * 70_000, deflater)) < 1000  # it did compress


def compressed_frame(first: int, data: bytes, compressor: zlib._Compress | None = None) -> bytes:
    """A masked client frame carrying ``data`` deflated (tail stripped), header byte ``first``."""
    compressor = compressor or zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return masked(first, payload[:-4])


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (compressed_frame(0x41, b"start") + compressed_frame(0xC0, b"rsv1 on a continuation"), 1002),
        (masked(0xC9, b"rsv1 on a ping"), 1002),
        (masked(0xA1, b"rsv2"), 1002),
        (masked(0xC1, b"\xff\xff not deflate"), 1007),
        (compressed_frame(0xC1, b"caf\xc3"), 1007),  # inflates to invalid UTF-8
        (compressed_frame(0xC2, b"z" * 101), 1009),  # 101 bytes once inflated
        (compressed_frame(0xC1, "é".encode() * 101), 1009),  # 101 characters once inflated
    ],
)
def test_compressed_frames_break_the_rules_with_their_close_code(wire: bytes, code: int) -> None:
    agreed = negotiate(["permessage-deflate"])
    assert agreed is not None
    reader = FrameReader(100, agreed.inflater())
    with pytest.raises(ProtocolError) as info:
        reader.feed(wire, deque())
    assert info.value.code == code


def test_a_deflate_bomb_is_refused_at_the_limit_without_inflating_it() -> None:
    limit = 1 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(64))  # 64 MiB of zeros
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    wire = masked(0xC2, bomb)
    assert len(wire) < 100_000
    agreed = negotiate(["permessage-deflate"])
    assert agreed is not None
    reader = FrameReader(limit, agreed.inflater())
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as info:
            reader.feed(wire, deque())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    assert peak < 3 * limit  # what was inflated before the refusal: about the limit, not 64 MiB


def test_compressed_messages_right_at_the_limit_are_accepted() -> None:
    agreed = negotiate(["permessage-deflate"])
    assert agreed is not None
    reader = FrameReader(1000, agreed.inflater())
    incompressible = random.Random(1).randbytes(1000)  # deflate makes it a little larger
    inbox: deque[str | bytes] = deque()
    reader.feed(compressed_frame(0xC2, incompressible) + compressed_frame(0xC1, "é".encode() * 1000), inbox)
    assert list(inbox) == [incompressible, "é" * 1000]


# -- the frame reader's bounds -----------------------------------------------------------


@pytest.mark.parametrize(("opcode", "fragment"), [(0x1, b""), (0x2, b""), (0x1, "€".encode()), (0x2, b"x")])
def test_a_fragment_costs_nothing_but_its_bytes(opcode: int, fragment: bytes) -> None:
    count = 20_000
    continuations = masked(0x00, fragment) * count  # none of them final
    reader = FrameReader(1 << 20)
    inbox: deque[str | bytes] = deque()
    reader.feed(masked(opcode, fragment), inbox)
    tracemalloc.start()
    try:
        for pos in range(0, len(continuations), 16384):  # one socket read at a time
            reader.feed(continuations[pos : pos + 16384], inbox)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The bytes themselves (60 KB at most here) and a 16 KiB read: no object per fragment.
    assert peak < 2 * len(fragment) * count + 32_000
    reader.feed(masked(0x80, b""), inbox)
    assert len(inbox.popleft()) == (count + 1 if fragment else 0)


def test_a_large_frame_arriving_in_small_reads_is_unmasked_once_as_it_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unmasked: list[int] = []
    real_unmask = reader_module.unmask

    def counting_unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
        unmasked.append(len(payload))
        return real_unmask(payload, mask)

    monkeypatch.setattr(reader_module, "unmask", counting_unmask)
    payload = random.Random(9).randbytes(1 << 20)
    wire = masked(0x82, payload)
    reader = FrameReader(1 << 20)
    inbox: deque[str | bytes] = deque()
    for pos in range(0, len(wire), 64):
        reader.feed(wire[pos : pos + 64], inbox)
    assert list(inbox) == [payload]
    assert sum(unmasked) == len(payload)  # every byte once...
    assert max(unmasked) <= 64  # ...as it came, never the whole payload gathered and parsed again


def test_invalid_utf8_is_refused_at_the_read_that_brings_it_inside_one_frame() -> None:
    wire = masked(0x81, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited" * 100)
    reader = FrameReader(1000)
    inbox: deque[str | bytes] = deque()
    valid_part = len(wire) - 604  # the header, the mask and the valid Greek word
    assert reader.feed(wire[:valid_part], inbox) is None  # fine so far
    with pytest.raises(ProtocolError) as info:
        reader.feed(wire[valid_part : valid_part + 4], inbox)  # the frame is far from over
    assert info.value.code == 1007


def test_a_masked_payload_split_at_every_offset_comes_out_whole() -> None:
    payload = bytes(range(256)) * 3
    wire = masked(0x02, payload[:300]) + masked(0x80, payload[300:])
    for cut in range(len(wire) + 1):
        reader = FrameReader(1 << 20)
        inbox: deque[str | bytes] = deque()
        reader.feed(wire[:cut], inbox)
        reader.feed(wire[cut:], inbox)
        assert list(inbox) == [payload], cut
