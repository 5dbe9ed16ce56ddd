"""The wsproto connection trioapi gives each WebSocket that hypercorn serves for it.

hypercorn's ``WSStream`` drives a ``wsproto.Connection`` made with wsproto's
``PerMessageDeflate``. Three things go wrong there for a server that faces the
internet, and are put right here, at the level where the bytes are:

- **Inflation without bound.** ``PerMessageDeflate`` inflates whatever a frame
  holds in one call: 1 MB on the wire that inflates to 1 GiB became 1 GiB in
  memory before hypercorn's size limit saw a byte of it. ``BoundedDeflate``
  inflates at most what the message limit leaves (``zlib``'s ``max_length``),
  and past it fails the connection with 1009.
- **The limit, then buffering on.** hypercorn's message buffer writes a chunk
  before it checks the length, sends 1009, and then keeps writing every later
  chunk of the same message into the same buffer, for as long as the client
  streams (a frame that declares 2^40 bytes took the process from 33 to 333 MB).
  ``LimitedConnection`` counts each message itself, before hypercorn sees the
  chunk that crosses the limit, and fails the connection there.
- **Protocol errors without a close frame.** wsproto reports a frame it refuses
  (invalid UTF-8, a reserved opcode, an unmasked frame) as a ``CloseConnection``
  event with the code RFC 6455 asks for (1007, 1002), and hypercorn drops the TCP
  connection without sending it: the client saw 1006.

Failing the connection means what RFC 6455 7.1.7 says: send a close frame with
the code, then close the TCP connection. ``LimitedConnection`` has hypercorn do
both through the path it already has for a client's close: the failure is
reported as a close that needs its answer (``REMOTE_CLOSING``), hypercorn sends
the answer, which is the failure's close frame with its code and reason, and
ends the stream.
"""

from __future__ import annotations

import zlib
from collections.abc import Generator
from typing import Final

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Event, Message, Ping
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits
from wsproto.handshake import server_extensions_handshake

__all__ = ["BoundedDeflate", "LimitedConnection", "server_connection"]

#: The reason of a 1009 close frame (as the native transport has it).
TOO_BIG_REASON: Final = "message too big"

#: What a deflate stream ends each message with, and what the sender leaves out (RFC 7692 7.2.1).
_SYNC_TAIL: Final = b"\x00\x00\xff\xff"


class BoundedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, inflating at most ``max_message_size`` bytes of each message.

    Negotiation and compression are wsproto's; only inflation is this class's
    own: each call to ``zlib`` may produce no more than what the message limit
    leaves, plus one byte to tell "over" from "exactly at it", so a bomb costs
    at most the limit before its 1009. A control frame between the fragments
    of a compressed message leaves the message's state alone (wsproto's own
    inflater forgets there that the message is compressed).
    """

    def __init__(self, max_message_size: int) -> None:
        super().__init__()
        self.max_message_size = max_message_size
        self._inflater: zlib._Decompress | None = None
        # The message being received: compressed or not (from its first frame's RSV1), and
        # how many bytes it has inflated to; whether the frame being received is inflated.
        self._message_compressed = False
        self._inflated = 0
        self._frame_compressed = False

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol() or opcode is Opcode.CONTINUATION:
            if rsv.rsv1:  # RSV1 marks a message as compressed, in its first frame only
                return CloseReason.PROTOCOL_ERROR
            self._frame_compressed = opcode is Opcode.CONTINUATION and self._message_compressed
        else:
            self._message_compressed = self._frame_compressed = rsv.rsv1
            self._inflated = 0
            if rsv.rsv1 and self._inflater is None:
                bits = self.server_max_window_bits if proto.client else self.client_max_window_bits
                self._inflater = zlib.decompressobj(-bits)
        return RsvBits(True, False, False)

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._inflater is not None
        try:
            # max_length is at least 1 (0 would mean "no limit").
            out = self._inflater.decompress(data, self.max_message_size - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.max_message_size:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        return self._inflate(data) if self._frame_compressed else data

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self._frame_compressed):
            return None
        self._message_compressed = self._frame_compressed = False
        out = self._inflate(_SYNC_TAIL)
        if proto.client and self.server_no_context_takeover:
            self._inflater = None
        if not proto.client and self.client_no_context_takeover:
            self._inflater = None
        return out


class LimitedConnection(Connection):
    """A server's wsproto connection that fails itself on a message over the limit or a protocol error.

    A failure is reported as a ``CloseConnection`` event with its code (1009
    "message too big", or the code of the frame wsproto refused, with an empty
    reason), and no event follows it. While the connection is open, it then
    reports ``REMOTE_CLOSING``, the state in which a server owes its peer a
    close frame, until that frame has been sent: hypercorn sends it, as it
    answers a client's close, then ends the stream. ``failed`` stays set, for
    the server to close the TCP connection gently.
    """

    def __init__(self, extensions: list[Extension], max_message_size: int) -> None:
        self.max_message_size = max_message_size
        #: Whether the connection was failed (a message too big, or a protocol error).
        self.failed = False
        self._size = 0  # of the message being received, so far
        super().__init__(ConnectionType.SERVER, extensions)

    def events(self) -> Generator[Event, None, None]:
        """wsproto's events, with a message over the limit or a refused frame turned into a failure."""
        if self.failed:
            return
        for event in super().events():
            if isinstance(event, Message):
                self._size += len(event.data)
                if self._size > self.max_message_size:
                    yield self._fail(CloseConnection(CloseReason.MESSAGE_TOO_BIG, TOO_BIG_REASON))
                    return
                if event.message_finished:
                    self._size = 0
            elif isinstance(event, CloseConnection) and self.state is ConnectionState.OPEN:
                # A frame wsproto refused, reported as if the peer had closed with its code.
                reason = TOO_BIG_REASON if event.code == CloseReason.MESSAGE_TOO_BIG else ""
                yield self._fail(CloseConnection(event.code, reason))
                return
            yield event

    def _settle(self) -> None:
        self.__class__ = LimitedConnection

    def _fail(self, close: CloseConnection) -> CloseConnection:
        self.failed = True
        if self.state is ConnectionState.OPEN:
            # Only a failed connection pays for the state that says a close frame is owed.
            self.__class__ = _Failed
        return close


class _Opened(LimitedConnection):
    """A ``LimitedConnection`` that has not sent a ping yet: hypercorn's first keepalive ping is dropped.

    hypercorn's keepalive task pings as soon as the 101 is out, when the peer
    has just spoken: a frame and its pong per connection for nothing, and one
    that lands in the middle of a client's first frame if the client answers
    before finishing it (Autobahn's fuzzing client does). The first ping then
    goes out one interval after the 101, as the native server's does.
    """

    def send(self, event: Event) -> bytes:
        if isinstance(event, Ping):
            self._settle()  # later pings, and every send, as wsproto has them
            return b""
        return super().send(event)


class _Failed(LimitedConnection):
    """A ``LimitedConnection`` failed while open: ``REMOTE_CLOSING`` until its close frame is out."""

    @property
    def state(self) -> ConnectionState:
        state = super().state
        return ConnectionState.REMOTE_CLOSING if state is ConnectionState.OPEN else state


def server_connection(
    offered: list[str] | None, max_message_size: int, *, pinging: bool
) -> tuple[LimitedConnection, bytes | None]:
    """The connection for a client that offered ``offered`` (``Sec-WebSocket-Extensions``), and the
    value of that header for the 101 (``None``: no extension).

    Negotiates as hypercorn does (the same offers, wsproto's ``PerMessageDeflate``
    logic). ``pinging``: hypercorn's keepalive pings are on (its first is dropped).
    """
    kind: type[LimitedConnection] = _Opened if pinging else LimitedConnection
    if not offered:
        return kind([], max_message_size), None
    deflate = BoundedDeflate(max_message_size)
    accepts = server_extensions_handshake(offered, [deflate])
    return kind([deflate], max_message_size), accepts
