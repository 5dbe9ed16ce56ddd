"""permessage-deflate (RFC 7692), server side: the negotiation, and each direction's zlib stream.

Every browser offers ``permessage-deflate``. ``negotiate`` reads the
client's offers in order and accepts the first one it can honour, or none.
What it agrees (``PerMessageDeflate``) makes the two halves a connection
needs: an ``Inflater`` for the client's messages, never producing more than
the reader's limit (so a small message that would inflate to a gigabyte is a
1009 after at most the limit's worth of output), and a ``Deflater`` for ours.

Windows are kept small, as the ``websockets`` library does by default: our
compressor uses at most ``2**MAX_WINDOW_BITS`` bytes of history and a small
hash table (39 KiB per connection instead of 262 KiB), and a client that lets
us choose its window (``client_max_window_bits`` in its offer, as browsers
send it) is asked for the same (an 11 KiB decompressor instead of 40 KiB).
Both zlib streams are made on first use, so a connection that never sends a
message costs nothing more.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Final

import attrs

__all__ = ["MAX_WINDOW_BITS", "Deflater", "Inflater", "PerMessageDeflate", "negotiate"]

#: The name of the extension, in ``Sec-WebSocket-Extensions``.
NAME: Final = "permessage-deflate"

#: The largest LZ77 window (as a power of two) we compress with, or ask a client to.
MAX_WINDOW_BITS: Final = 12

#: zlib's memory level for our compressor: 5 (of 1-9) takes 16 KiB for its hash table.
MEMORY_LEVEL: Final = 5

#: Ends every compressed message on the wire; the sender strips it, the receiver puts it back.
_TAIL: Final = b"\x00\x00\xff\xff"

_FLAGS: Final = frozenset({"server_no_context_takeover", "client_no_context_takeover"})
_WINDOWS: Final = frozenset({"server_max_window_bits", "client_max_window_bits"})
#: RFC 7692's ABNF for a window size: 8 to 15, no leading zero.
_WINDOW_VALUES: Final = {str(bits): bits for bits in range(8, 16)}


@attrs.frozen
class PerMessageDeflate:
    """What was agreed with one client, and the ``Sec-WebSocket-Extensions`` value that says so."""

    #: The response header's value.
    response: str
    #: Our compressor starts afresh for every message (the client asked).
    server_no_context_takeover: bool
    #: The client starts afresh for every message (it said it would): no history to keep.
    client_no_context_takeover: bool
    #: The window our compressor uses.
    server_window_bits: int
    #: The largest window the client may use: our decompressor's.
    client_window_bits: int

    def inflater(self) -> Inflater:
        """The decompressor for this client's messages."""
        # zlib cannot compress with a 256-byte window and quietly uses 512 bytes: allow for that.
        return Inflater(max(9, self.client_window_bits), not self.client_no_context_takeover)

    def deflater(self) -> Deflater:
        """The compressor for our messages to this client."""
        return Deflater(self.server_window_bits, not self.server_no_context_takeover)


def negotiate(offers: Iterable[str]) -> PerMessageDeflate | None:
    """Accept the first ``permessage-deflate`` offer we can honour (RFC 7692 section 7.1), or ``None``.

    ``offers`` are the comma-separated elements of the client's
    ``Sec-WebSocket-Extensions`` headers. An offer with an unknown or repeated
    parameter, or an invalid value, is declined, as is one that limits our
    window to 8 bits (zlib cannot compress with it); the next one is tried.
    """
    for offer in offers:
        name, *parameters = offer.split(";")
        if name.strip().lower() != NAME:
            continue
        agreed = _accept(parameters)
        if agreed is not None:
            return agreed
    return None


def _accept(parameters: list[str]) -> PerMessageDeflate | None:
    """The agreement for one offer's parameters, or ``None`` to decline it."""
    seen: dict[str, int | None] = {}
    for parameter in parameters:
        key, equals, value = parameter.partition("=")
        key = key.strip().lower()
        value = value.strip().strip('"')
        if key in seen:
            return None
        if key in _FLAGS:
            if equals:
                return None
            seen[key] = None
        elif key in _WINDOWS:
            bits = _WINDOW_VALUES.get(value) if equals else None
            if bits is None and (equals or key == "server_max_window_bits"):
                return None  # a bad value, or the server's window offered without one
            seen[key] = bits
        else:
            return None
    response = [NAME]
    server_no_context_takeover = "server_no_context_takeover" in seen
    client_no_context_takeover = "client_no_context_takeover" in seen
    if server_no_context_takeover:
        response.append("server_no_context_takeover")
    if client_no_context_takeover:
        response.append("client_no_context_takeover")
    server_bits = MAX_WINDOW_BITS
    if "server_max_window_bits" in seen:
        offered = seen["server_max_window_bits"]
        assert offered is not None
        if offered < 9:
            return None
        server_bits = min(offered, MAX_WINDOW_BITS)
        response.append(f"server_max_window_bits={server_bits}")  # the same or smaller, as the RFC asks
    client_bits = 15
    if "client_max_window_bits" in seen:  # the client lets us choose its window
        client_bits = min(seen["client_max_window_bits"] or 15, MAX_WINDOW_BITS)
        response.append(f"client_max_window_bits={client_bits}")
    return PerMessageDeflate(
        "; ".join(response),
        server_no_context_takeover,
        client_no_context_takeover,
        server_bits,
        client_bits,
    )


class Inflater:
    """Decompresses a client's messages, piece by piece, never past the limit it is given.

    zlib's ``max_length`` stops the output at the limit, so a bomb costs at most
    the limit's worth of memory before it is refused. ``zlib.error`` means the
    client sent data that is not a deflate stream.
    """

    __slots__ = ("_keep", "_stream", "_window_bits")

    def __init__(self, window_bits: int, context_takeover: bool) -> None:
        self._window_bits = window_bits
        self._keep = context_takeover
        self._stream: zlib._Decompress | None = None

    def inflate(self, data: bytes, limit: int) -> bytes:
        """The output of ``data``: at most ``limit + 1`` bytes, so more than ``limit`` means too much."""
        stream = self._stream
        if stream is None:
            stream = self._stream = zlib.decompressobj(-self._window_bits)
        return stream.decompress(data, limit + 1)

    def end(self, limit: int) -> bytes:
        """The message's last output (at most ``limit + 1`` bytes), and the stream ready for the next one."""
        stream = self._stream
        if stream is None:
            stream = self._stream = zlib.decompressobj(-self._window_bits)
        data = stream.decompress(_TAIL, limit + 1)
        if not self._keep or stream.eof:  # a final block ends the stream: the next message starts anew
            self._stream = None
        return data


class Deflater:
    """Compresses our messages; with context takeover, in the order they go out."""

    __slots__ = ("_keep", "_stream", "_window_bits")

    def __init__(self, window_bits: int, context_takeover: bool) -> None:
        self._window_bits = window_bits
        self._keep = context_takeover
        self._stream: zlib._Compress | None = None

    def reset(self) -> None:
        """Forget the history: the last message compressed will never reach the client.

        Later messages must not refer to it; a fresh stream refers to nothing
        before it, which a client's decompressor reads as well as any other.
        """
        self._stream = None

    def compress(self, data: bytes) -> bytes:
        """One whole message, compressed and flushed, without the tail the receiver adds back."""
        stream = self._stream
        if stream is None:
            stream = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._window_bits, MEMORY_LEVEL
            )
            if self._keep:
                self._stream = stream
        out = stream.compress(data) + stream.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4]  # a sync flush always ends with the tail
