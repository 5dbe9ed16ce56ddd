"""RFC 6455 frames, server side: parse what a client sends, build what the server sends.

The native transport's per-message path. wsproto (which still does the HTTP
handshake) parses frames through a generator per call, an event object per
frame and a buffer class; this is one function over the bytes read, since a
client's message is almost always one whole frame in one read. No extensions
are negotiated, so every frame is final-or-continuation data, or control.

Everything the RFC says a server must refuse is refused with the close code
it names: 1002 for a protocol error (reserved bits or opcodes, an unmasked
frame, a fragmented or oversized control frame, a continuation of nothing, a
non-minimal length, an invalid close code), 1007 for invalid UTF-8 (in a text
message or a close reason), 1009 for a message over the size limit, known from
the frame header before its payload is read.
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["CLOSE", "PING", "PONG", "FrameReader", "ProtocolError", "close_frame", "frame"]

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

#: Close codes a peer may send (RFC 6455 7.4 and the IANA registry); 3000-4999 too.
_VALID_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

#: Codes that only describe a closure locally and must never be sent in a close frame.
_LOCAL_ONLY_CODES: Final = frozenset({1005, 1006, 1015})

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _c_unmasking() -> Callable[[bytes | bytearray, bytes | bytearray], bytes] | None:
    """websockets' unmasking in C, when it is installed (``trioapi[speed]``): 60x faster on 16 KiB."""
    try:
        from websockets.speedups import apply_mask
    except ImportError:  # pragma: no cover - the test extra installs websockets
        return None
    return apply_mask


_c_apply_mask = _c_unmasking()


class ProtocolError(Exception):
    """The client broke RFC 6455 (or a limit): close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def _unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask``: in C when websockets is there, else as one big integer."""
    if _c_apply_mask is not None:
        return _c_apply_mask(payload, mask)
    size = len(payload)
    key = (bytes(mask) * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (server to client)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; 1005 (no code received) is answered with an empty one, as the RFC says."""
    if code == 1005:
        return frame(CLOSE, b"")
    if code in _LOCAL_ONLY_CODES:
        code = 1000
    encoded = reason.encode()
    if len(encoded) > 123:  # a control frame carries 125 bytes: cut at a character boundary
        encoded = encoded[:123].decode("utf-8", "ignore").encode()
    return frame(CLOSE, code.to_bytes(2, "big") + encoded)


class FrameReader:
    """Turn the bytes a client sends into whole messages and control frames.

    ``feed`` appends each complete message (``str`` for text, ``bytes`` for
    binary) to the inbox it is given and returns the control frames in order,
    as ``(opcode, payload)`` with a close's payload parsed into ``(code,
    reason)``. It raises ``ProtocolError`` for anything the RFC refuses; after
    that, or after a close frame, it reads nothing more.
    """

    __slots__ = (
        "_buffer",
        "_chars",
        "_decoder",
        "_done",
        "_max_size",
        "_opcode",
        "_parts",
        "_size",
        "_text_bytes",
    )

    def __init__(self, max_size: int) -> None:
        #: The longest message: characters for text, bytes for binary.
        self._max_size = max_size
        # A text of max_size characters may take 4 bytes each: its limit in bytes.
        self._text_bytes = 4 * max_size
        # Bytes of a frame that has not fully arrived yet.
        self._buffer = bytearray()
        # The message being assembled from fragments: its opcode (0: none), parts and sizes.
        self._opcode = 0
        self._parts: list[bytes] | list[str] = []
        self._size = 0
        self._chars = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        self._done = False

    def feed(self, data: bytes, inbox: deque[str | bytes]) -> list[tuple[int, object]] | None:
        """Parse ``data``: messages go to ``inbox``; control frames are returned (``None`` if none)."""
        if self._done:
            return None
        buffer = self._buffer
        chunk: bytes | bytearray
        if buffer:
            buffer += data
            chunk = buffer
        else:
            chunk = data
        end = len(chunk)
        pos = 0
        controls: list[tuple[int, object]] | None = None
        try:
            while end - pos >= 2:
                first = chunk[pos]
                second = chunk[pos + 1]
                if first & 0x70:
                    raise ProtocolError(1002, "")  # reserved bits, and no extension to explain them
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
                        raise ProtocolError(1002, "")  # reserved opcode, or a fragmented/long control frame
                elif opcode > BINARY:
                    raise ProtocolError(1002, "")  # reserved data opcode
                elif (opcode == CONTINUATION) is not bool(self._opcode):
                    raise ProtocolError(1002, "")  # a continuation of nothing, or a message inside one
                elif self._size + length > (
                    self._max_size if (opcode or self._opcode) == BINARY else self._text_bytes
                ):
                    raise ProtocolError(1009, "message too big")  # known before its payload arrives
                if end - start < length:
                    break  # wait for the rest of the frame (its size is bounded above)
                payload = _unmask(chunk[start : start + length], chunk[start - 4 : start]) if length else b""
                pos = start + length
                if opcode >= CLOSE:
                    if controls is None:
                        controls = []
                    if opcode == CLOSE:
                        controls.append((CLOSE, _parse_close(payload)))
                        self._done = True
                        break
                    controls.append((opcode, payload))
                elif first & 0x80 and opcode:  # a whole message in one frame: the usual case
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
                else:
                    self._fragment(opcode, payload, bool(first & 0x80), inbox)
        except ProtocolError:
            self._done = True
            raise
        finally:
            if chunk is buffer:
                del buffer[:pos]
            elif pos < end:
                buffer += chunk[pos:]
        return controls

    def _fragment(self, opcode: int, payload: bytes, final: bool, inbox: deque[str | bytes]) -> None:
        """One frame of a fragmented message: decode text as it comes (bad UTF-8 fails at once)."""
        if opcode:
            self._opcode = opcode
            if opcode == TEXT:
                self._decoder = _utf8_decoder()
        self._size += len(payload)
        if self._opcode == TEXT:
            assert self._decoder is not None
            try:
                text = self._decoder.decode(payload, final)
            except UnicodeDecodeError:
                raise ProtocolError(1007, "") from None
            self._chars += len(text)
            if self._chars > self._max_size:
                raise ProtocolError(1009, "message too big")
            self._parts.append(text)  # type: ignore[arg-type]
        else:
            self._parts.append(payload)  # type: ignore[arg-type]
        if final:
            parts = self._parts
            inbox.append("".join(parts) if self._opcode == TEXT else b"".join(parts))  # type: ignore[arg-type]
            self._parts = []
            self._opcode = self._size = self._chars = 0
            self._decoder = None


def _parse_close(payload: bytes) -> tuple[int, str]:
    """A close frame's (code, reason); no code at all is 1005."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError(1002, "")
    code = int.from_bytes(payload[:2], "big")
    if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
        raise ProtocolError(1002, "")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError(1007, "") from None
