"""The small interface between a ``WebSocket`` and whatever moves its frames.

Three transports implement it: ``ASGITransport`` (any ASGI server, hypercorn's
trio worker in particular), ``TrioWebSocketTransport`` (a trio-websocket
connection) and ``NativeTransport`` (trioapi's own engine, frames read in the
handler's task). ``WebSocket`` only ever talks to this interface, so the same
handler code runs on all of them, in the way hypercorn keeps its sans-I/O
protocol apart from its I/O backends.

Every ``receive`` must be safe to cancel: a message is either returned or kept
for the next call, never lost (the stand-in reader relies on it).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["PeerClosed", "WebSocketTransport"]


class PeerClosed(Exception):
    """The peer has gone: it sent a close frame (``code``) or the connection broke (1006)."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class WebSocketTransport(Protocol):
    """The operations a ``WebSocket`` needs; every method may raise ``PeerClosed``.

    The WebSocket enforces the state machine; a transport may assume it is called
    in a legal order (``accept`` or ``deny`` or ``close`` first, one ``receive`` at
    a time, nothing after ``close``).
    """

    #: ``True`` when ``deny`` can send a real HTTP response; otherwise the
    #: handshake can only be refused with the server's bare 403.
    can_deny: bool
    #: ``False`` when ``write_now`` never writes (an ASGI send is a coroutine), so
    #: a hub can skip asking for every frame.
    writes_now: bool

    async def connect(self) -> None:
        """Wait for the client's side of the handshake, if the server has not had it already.

        ``PeerClosed`` if the client left first. ``accept`` does this by itself.
        """

    async def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """Complete the handshake (HTTP 101)."""

    async def receive(self) -> str | bytes:
        """The next whole message: ``str`` for a text frame, ``bytes`` for binary."""

    async def send(self, message: str | bytes) -> None:
        """Send one message as a text (``str``) or binary (``bytes``) frame."""

    def write_now(self, message: str | bytes) -> bool:
        """Send ``message`` without waiting, if possible now; ``False`` (and nothing sent) if not."""

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame; before ``accept`` this refuses the handshake (HTTP 403)."""

    async def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Refuse the handshake with an HTTP response; only when ``can_deny``."""

    async def finish(self) -> None:
        """After the handler: read until the peer answers our close frame (the caller bounds it).

        Callers call it once our close frame is out and the peer's is not in; the ASGI
        transport, which cannot tell, relies on that (``wait_for_close_answer``).
        """
