"""The WebSocket protocol for a server, without I/O: bytes in, messages and bytes out.

The native transport's protocol half, kept apart from its sockets the way
hypercorn keeps ``protocol/`` apart from its I/O backends: nothing here
imports trio or socket, so each piece is tested by feeding it bytes.

- ``frames``: what a frame is (opcodes, close codes) and the frame writer;
- ``reader``: ``FrameReader``, client bytes to messages and control frames;
- ``deflate``: permessage-deflate (RFC 7692): the negotiation and both zlib streams;
- ``closing``: ``CloseHandshake``, the connection's state machine.

Internal to trioapi: the API may change without notice.
"""

from trioapi.protocol.closing import CloseEvent, CloseHandshake, ConnectionState, IllegalTransition
from trioapi.protocol.deflate import Deflater, Inflater, PerMessageDeflate, negotiate
from trioapi.protocol.frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    RSV1,
    TEXT,
    ProtocolError,
    close_frame,
    frame,
    message_frame,
)
from trioapi.protocol.reader import FrameReader

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "RSV1",
    "TEXT",
    "CloseEvent",
    "CloseHandshake",
    "ConnectionState",
    "Deflater",
    "FrameReader",
    "IllegalTransition",
    "Inflater",
    "PerMessageDeflate",
    "ProtocolError",
    "close_frame",
    "frame",
    "message_frame",
    "negotiate",
]
