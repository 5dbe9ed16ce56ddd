"""The frame reader: the bytes a client sends, turned into whole messages and control frames.

The native transport's per-message path. wsproto (which still does the HTTP
handshake) parses frames through a generator per call, an event object per
frame and a buffer class; this is one function over the bytes read, since a
client's message is almost always one whole frame in one read, and that case
takes one unmasking and one decode, with no object besides the message.

Everything else is assembled in one buffer per message, as its bytes come:
fragments, a frame whose payload arrives over many reads, and compressed
messages (permessage-deflate, RFC 7692). So

- joining a message costs each of its bytes once, however it is cut: a
  payload that arrives in 64-byte reads is unmasked 64 bytes at a time as it
  comes, not gathered and parsed again from its start;
- a fragment costs nothing but its bytes: ten million empty continuation
  frames leave the buffer as it was (no object per fragment);
- text is checked as it arrives: invalid UTF-8 is a 1007 at the read that
  brings it, not when its frame or message ends;
- inflation stops at the limit (``Inflater``): a small message that would
  inflate to a gigabyte is a 1009 after the limit's worth of output.

Everything the RFC says a server must refuse is refused with the close code
it names: 1002 for a protocol error (reserved bits or opcodes, an unmasked
frame, a fragmented or oversized control frame, a continuation of nothing, a
non-minimal length, an invalid close code, RSV1 without permessage-deflate or
on anything but a message's first frame), 1007 for invalid UTF-8 (in a text
message or a close reason) or a compressed message that does not inflate,
1009 for a message over the size limit, known from the frame header before
its payload is read (and, compressed, from its output as it inflates).
"""

from __future__ import annotations

import codecs
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from trioapi.protocol.frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PONG,
    RSV1,
    TEXT,
    ProtocolError,
    parse_close,
)

if TYPE_CHECKING:
    from trioapi.protocol.deflate import Inflater

__all__ = ["FrameReader", "unmask"]

_utf8_decoder = codecs.getincrementaldecoder("utf-8")

#: Bytes that complete any frame head a read cut short: a header with its mask, or a
#: whole control frame. Only those are copied to the buffer; payloads never are.
_HEAD_ROOM = 14 + 125


def _c_unmasking() -> Callable[[bytes | bytearray, bytes | bytearray], bytes] | None:
    """websockets' unmasking in C, when it is installed (``trioapi[speed]``): 60x faster on 16 KiB."""
    try:
        from websockets.speedups import apply_mask
    except ImportError:  # pragma: no cover - the test extra installs websockets
        return None
    return apply_mask


_c_apply_mask = _c_unmasking()


def unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask``: in C when websockets is there, else as one big integer."""
    if _c_apply_mask is not None:
        return _c_apply_mask(payload, mask)
    size = len(payload)
    key = (bytes(mask) * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class FrameReader:
    """Turn the bytes a client sends into whole messages and control frames.

    ``feed`` appends each complete message (``str`` for text, ``bytes`` for
    binary) to the inbox it is given and returns the control frames in order,
    as ``(opcode, payload)`` with a close's payload parsed into ``(code,
    reason)``. It raises ``ProtocolError`` for anything the RFC refuses; after
    that, or after a close frame, it reads nothing more (``done``).

    ``inflater`` is given when permessage-deflate was agreed: RSV1 then marks
    a compressed message.
    """

    __slots__ = (
        "_buffer",
        "_chars",
        "_compressed",
        "_decoder",
        "_final",
        "_inflater",
        "_left",
        "_mask",
        "_max_size",
        "_message",
        "_opcode",
        "_text_bytes",
        "_wire",
        "done",
    )

    def __init__(self, max_size: int, inflater: Inflater | None = None) -> None:
        #: The longest message: characters for text, bytes for binary.
        self._max_size = max_size
        # A text of max_size characters may take 4 bytes each: its limit in bytes.
        self._text_bytes = 4 * max_size
        self._inflater = inflater
        # Bytes of a frame whose header (or, for a control frame, whose payload) is not all here.
        self._buffer = bytearray()
        # The data frame whose payload is arriving: bytes still to come, its mask turned
        # to the next byte's place, and whether it ends its message.
        self._left = 0
        self._mask = b""
        self._final = False
        # The message being assembled (all but a whole one in a single frame): its
        # opcode (0: none), bytes so far, payload bytes on the wire so far, whether
        # it is compressed, and for text its decoder (a check) and characters so far.
        self._opcode = 0
        self._message: bytearray | None = None  # made on first need: most connections never need it
        self._wire = 0
        self._compressed = False
        self._decoder: codecs.IncrementalDecoder | None = None
        self._chars = 0
        #: Nothing more will be read: a close frame came, or a protocol error.
        self.done = False

    def feed(self, data: bytes, inbox: deque[str | bytes]) -> list[tuple[int, object]] | None:
        """Parse ``data``: messages go to ``inbox``; control frames are returned (``None`` if none)."""
        if self.done:
            return None
        buffer = self._buffer
        chunk: bytes | bytearray = data
        pos = end = 0
        # While ``chunk`` is the buffer: where the bytes of ``data`` it does not hold start.
        rest = 0
        controls: list[tuple[int, object]] | None = None
        try:
            if self._left:  # more of a payload that is arriving (the buffer is empty meanwhile)
                pos = self._take_payload(data, 0, inbox)
            elif buffer:  # the head of a frame the last read cut: complete it from this one
                rest = _HEAD_ROOM
                buffer += data[:rest]
                chunk = buffer
            while True:
                end = len(chunk)
                while end - pos >= 2:
                    first = chunk[pos]
                    second = chunk[pos + 1]
                    if first & 0x70 and (
                        first & 0x70 != RSV1 or self._inflater is None or first & 0x0F not in (TEXT, BINARY)
                    ):
                        # Reserved bits; RSV1 only with permessage-deflate, on a message's first frame.
                        raise ProtocolError(1002, "")
                    if not second & 0x80:
                        raise ProtocolError(1002, "")  # a client must mask every frame
                    opcode = first & 0x0F
                    length = second & 0x7F
                    start = pos + 6
                    if length == 126:
                        if end - pos < 8:
                            break
                        length = int.from_bytes(chunk[pos + 2 : pos + 4], "big")
                        start = pos + 8
                        if length < 126:
                            raise ProtocolError(1002, "")
                    elif length == 127:
                        if end - pos < 14:
                            break
                        length = int.from_bytes(chunk[pos + 2 : pos + 10], "big")
                        start = pos + 14
                        if length < 65536 or length >> 63:
                            raise ProtocolError(1002, "")
                    if opcode >= CLOSE:
                        if opcode > PONG or not first & 0x80 or length > 125:
                            # A reserved opcode, or a fragmented or long control frame.
                            raise ProtocolError(1002, "")
                        if end - start < length:
                            break  # wait for all of it: 125 bytes at most
                        payload = (
                            unmask(chunk[start : start + length], chunk[start - 4 : start]) if length else b""
                        )
                        pos = start + length
                        if controls is None:
                            controls = []
                        if opcode == CLOSE:
                            controls.append((CLOSE, parse_close(payload)))
                            self.done = True
                            break
                        controls.append((opcode, payload))
                        continue
                    if opcode > BINARY:
                        raise ProtocolError(1002, "")  # reserved data opcode
                    if (opcode == CONTINUATION) is not bool(self._opcode):
                        raise ProtocolError(1002, "")  # a continuation of nothing, or a message inside one
                    limit = self._max_size if (opcode or self._opcode) == BINARY else self._text_bytes
                    if self._wire + length > limit and not self._deflate_slack(
                        first, self._wire + length, limit
                    ):
                        raise ProtocolError(1009, "message too big")  # known before its payload arrives
                    if first & 0xC0 == 0x80 and opcode and end - start >= length:
                        # A whole uncompressed message in one frame, all here: the usual case.
                        payload = (
                            unmask(chunk[start : start + length], chunk[start - 4 : start]) if length else b""
                        )
                        pos = start + length
                        if opcode == TEXT:
                            try:
                                text = payload.decode()
                            except UnicodeDecodeError:
                                raise ProtocolError(1007, "") from None
                            if len(text) > self._max_size:
                                raise ProtocolError(1009, "message too big")
                            inbox.append(text)
                        else:
                            inbox.append(payload)
                        continue
                    if end < start:
                        break  # its mask is still to come
                    # Part of a message, or a frame not all here yet: into the message buffer.
                    if opcode:
                        self._start_message(opcode, first)
                    self._wire += length
                    if end - start >= length:
                        if length:
                            self._add(unmask(chunk[start : start + length], chunk[start - 4 : start]))
                        pos = start + length
                        if first & 0x80:
                            self._end_message(inbox)
                    else:  # the rest as it comes
                        self._left = length
                        self._final = bool(first & 0x80)
                        self._mask = bytes(chunk[start - 4 : start])
                        pos = self._take_payload(chunk, start, inbox)
                if chunk is data or self.done or rest >= len(data):
                    break
                # What the buffer completed is parsed: on with the rest of this read.
                del buffer[:pos]
                pos = 0
                if buffer:  # the head of the next frame, cut too: complete it in turn
                    buffer += data[rest : rest + _HEAD_ROOM]
                    rest += _HEAD_ROOM
                else:
                    chunk = data
                    pos = self._take_payload(data, rest, inbox) if self._left else rest
        except ProtocolError:
            self.done = True
            raise
        finally:
            if chunk is buffer:
                del buffer[:pos]
            elif pos < end:
                buffer += chunk[pos:]
        return controls

    def _deflate_slack(self, first: int, size: int, limit: int) -> bool:
        """Whether a compressed message's wire size is over ``limit`` only by what deflate may add."""
        compressed = first & RSV1 if first & 0x0F else self._compressed
        return bool(compressed) and size <= limit + (limit >> 10) + 64

    def _start_message(self, opcode: int, first: int) -> None:
        """The first frame of a message that is assembled in the buffer."""
        self._opcode = opcode
        self._compressed = bool(first & RSV1)
        if opcode == TEXT:
            self._decoder = _utf8_decoder()
        if self._message is None:
            self._message = bytearray()  # kept for the next message: cleared, not made again

    def _take_payload(self, chunk: bytes | bytearray, pos: int, inbox: deque[str | bytes]) -> int:
        """Take what ``chunk`` holds of the arriving payload from ``pos``; return where it stopped."""
        size = min(self._left, len(chunk) - pos)
        if size:
            mask = self._mask
            self._left -= size
            if size & 3:  # the next byte falls elsewhere in the mask
                self._mask = mask[size & 3 :] + mask[: size & 3]
            self._add(unmask(chunk[pos : pos + size], mask))
        if not self._left and self._final:
            self._end_message(inbox)
        return pos + size

    def _add(self, data: bytes) -> None:
        """Payload bytes of the message being assembled: inflated if compressed, then kept."""
        if self._compressed:
            data = self._inflate(data, end=False)
        self._keep(data)

    def _inflate(self, data: bytes, *, end: bool) -> bytes:
        inflater = self._inflater
        assert inflater is not None
        assert self._message is not None
        room = (self._max_size if self._opcode == BINARY else self._text_bytes) - len(self._message)
        try:
            data = inflater.end(room) if end else inflater.inflate(data, room)
        except zlib.error:
            raise ProtocolError(1007, "") from None
        if len(data) > room:
            raise ProtocolError(1009, "message too big")
        return data

    def _keep(self, data: bytes) -> None:
        """Bytes of the message: text is checked and counted first (bad UTF-8 fails at once)."""
        if self._opcode == TEXT:
            decoder = self._decoder
            assert decoder is not None
            try:
                self._chars += len(decoder.decode(data))
            except UnicodeDecodeError:
                raise ProtocolError(1007, "") from None
            if self._chars > self._max_size:
                raise ProtocolError(1009, "message too big")
        message = self._message
        assert message is not None  # made by _start_message
        message += data  # in place

    def _end_message(self, inbox: deque[str | bytes]) -> None:
        """The last frame of the message is in: hand it over, and make room for the next."""
        if self._compressed:
            self._keep(self._inflate(b"", end=True))
        message = self._message
        assert message is not None
        if self._opcode == TEXT:
            decoder = self._decoder
            assert decoder is not None
            try:
                decoder.decode(b"", True)  # a character cut off at the end
            except UnicodeDecodeError:
                raise ProtocolError(1007, "") from None
            inbox.append(message.decode())  # checked piece by piece already
            self._decoder = None
            self._chars = 0
        else:
            inbox.append(bytes(message))
        message.clear()
        self._opcode = self._wire = 0
        self._compressed = False
