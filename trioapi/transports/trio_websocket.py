"""The trio-websocket transport: a ``WebSocket`` driven by a real ``trio_websocket`` connection.

trio-websocket parses frames in a reader task of its own and hands each message
to ``get_message`` through a memory channel; it answers pings, reports the
client's real close code, and enforces its ``max_message_size`` with 1009.
This module only translates between its API and trioapi's transport interface:
``WebSocketRequest.accept(subprotocol=, extra_headers=)`` / ``.reject(status,
extra_headers=, body=)`` for the handshake, ``get_message`` / ``send_message``
for messages, ``aclose(code, reason)`` for the close handshake.
"""

from __future__ import annotations

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from trioapi.transports import PeerClosed

__all__ = ["CLOSE_HANDSHAKE_TIMEOUT", "TrioWebSocketTransport"]

#: Seconds ``close`` waits for the peer to answer our close frame (trio-websocket's
#: ``aclose`` waits for it) before the TCP connection is closed regardless.
CLOSE_HANDSHAKE_TIMEOUT = 2.0


def _peer_closed(exc: ConnectionClosed) -> PeerClosed:
    reason = exc.reason
    if reason is None:
        return PeerClosed(1006, "")
    return PeerClosed(reason.code, reason.reason or "")


class TrioWebSocketTransport:
    """A ``WebSocketTransport`` over a ``trio_websocket.WebSocketRequest`` and the connection it accepts."""

    __slots__ = ("_connection", "_request")

    can_deny = True
    writes_now = False

    def __init__(self, request: WebSocketRequest) -> None:
        self._request = request
        self._connection: WebSocketConnection | None = None

    @property
    def connection(self) -> WebSocketConnection | None:
        """The trio-websocket connection, once accepted."""
        return self._connection

    async def connect(self) -> None:
        """trio-websocket has read the client's request already: nothing to wait for."""
        await trio.lowlevel.checkpoint()

    async def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """``WebSocketRequest.accept``: the 101 response."""
        try:
            self._connection = await self._request.accept(subprotocol=subprotocol, extra_headers=headers)
        except ConnectionClosed as exc:
            raise _peer_closed(exc) from None

    async def receive(self) -> str | bytes:
        """``get_message``: the next whole message (cancellation-safe: a memory channel receive)."""
        assert self._connection is not None
        try:
            return await self._connection.get_message()
        except ConnectionClosed as exc:
            raise _peer_closed(exc) from None

    async def send(self, message: str | bytes) -> None:
        """``send_message``: one text (``str``) or binary (``bytes``) frame."""
        assert self._connection is not None
        try:
            await self._connection.send_message(message)
        except ConnectionClosed as exc:
            raise _peer_closed(exc) from None

    def write_now(self, message: str | bytes) -> bool:
        """trio-websocket sends through a lock and an await: never written at once."""
        return False

    async def close(self, code: int, reason: str) -> None:
        """``aclose(code, reason)``, waiting at most ``CLOSE_HANDSHAKE_TIMEOUT`` for the peer's answer.

        Before accept this refuses the handshake with 403, as hypercorn does.
        """
        if self._connection is None:
            await self.deny(403, [], b"")
            return
        with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
            # Closes the TCP connection when it returns or is cancelled.
            await self._connection.aclose(code, reason or None)

    async def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """``WebSocketRequest.reject``: an HTTP response instead of the 101."""
        if body:  # trio-websocket adds Content-Length itself
            headers = [(name, value) for name, value in headers if name.lower() != b"content-length"]
        try:
            await self._request.reject(status, extra_headers=headers, body=body or None)
        except ConnectionClosed as exc:
            raise _peer_closed(exc) from None

    async def finish(self) -> None:
        """``close`` has waited for the peer's answer already."""
        await trio.lowlevel.checkpoint()
