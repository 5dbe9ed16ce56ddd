"""RFC 6455 frames, server side: what a frame is, what a server may not accept, and the frame writer.

The writer is three functions, since a server's frames need no state of
their own: ``frame`` (any final frame), ``close_frame`` and ``message_frame``
(a text or binary message, compressed when permessage-deflate is on). The
reader, which does keep state between reads, is ``trioapi.protocol.reader``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from trioapi.protocol.deflate import Deflater

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "RSV1",
    "TEXT",
    "ProtocolError",
    "close_frame",
    "frame",
    "message_frame",
    "parse_close",
]

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

#: The first header bit after FIN: set on the first frame of a compressed message (RFC 7692).
RSV1: Final = 0x40

#: Close codes a peer may send (RFC 6455 7.4 and the IANA registry); 3000-4999 too.
_VALID_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

#: Codes that only describe a closure locally and must never be sent in a close frame.
_LOCAL_ONLY_CODES: Final = frozenset({1005, 1006, 1015})


class ProtocolError(Exception):
    """The client broke RFC 6455 (or a limit): close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (server to client); ``opcode | RSV1`` marks a compressed message."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


def message_frame(message: str | bytes, deflater: Deflater | None = None) -> bytes:
    """The frame for one message: text for ``str``, binary for ``bytes``; compressed by ``deflater``.

    With a deflater, call it in the order the frames go out: with context
    takeover each compressed message refers to the ones before it.
    """
    if type(message) is str:
        opcode, payload = TEXT, message.encode()
    else:
        opcode, payload = BINARY, message  # type: ignore[assignment]
    if deflater is None:
        return frame(opcode, payload)
    return frame(opcode | RSV1, deflater.compress(payload))


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


def parse_close(payload: bytes) -> tuple[int, str]:
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
