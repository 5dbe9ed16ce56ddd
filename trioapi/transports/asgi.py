"""The ASGI transport: a WebSocket driven by an ASGI server's ``receive``/``send``."""

from __future__ import annotations

import trio

from trioapi._types import Message, Receive, Scope, Send
from trioapi.transports import PeerClosed

__all__ = ["ASGITransport"]

#: What a server's ``send`` raises when the connection under it is gone: a broken pipe, a
#: closed stream, or (hypercorn on Trio) ``BusyResourceError``, when the server is already
#: shutting the socket down (``send_eof``, outside its send lock) as the app's frame goes out.
_GONE = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)


#: A checkpoint of the transport's own after this many sends (see ``ASGITransport.send``).
SENDS_PER_CHECKPOINT = 64


class ASGITransport:
    """Translate WebSocket operations to ASGI ``websocket.*`` messages.

    The ASGI spec says the first event is ``websocket.connect``; it is consumed
    before the first ``accept`` so the handler never sees it.
    """

    __slots__ = ("_connected", "_receive", "_send", "_sends", "can_deny")

    writes_now = False

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._connected = False
        self._sends = 0  # since the last checkpoint of our own
        self.can_deny = "websocket.http.response" in (scope.get("extensions") or {})

    async def connect(self) -> None:
        """Consume the ``websocket.connect`` event (``PeerClosed`` if the client left first)."""
        if self._connected:
            return
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.disconnect":
            raise PeerClosed(message.get("code", 1006), message.get("reason") or "")
        if kind != "websocket.connect":
            raise RuntimeError(f'Expected ASGI message "websocket.connect", got {kind!r}')
        self._connected = True

    async def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """Consume ``websocket.connect`` if needed, then send ``websocket.accept``."""
        await self.connect()
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": headers})

    async def receive(self) -> str | bytes:
        """The next ``websocket.receive`` payload; ``PeerClosed`` on ``websocket.disconnect``."""
        message: Message = await self._receive()
        if message["type"] == "websocket.receive":
            # Hypercorn sends both keys with one of them None; others send one key.
            text: str | None = message.get("text")
            if text is not None:
                return text
            data: bytes = message.get("bytes") or b""
            return data
        if message["type"] == "websocket.disconnect":
            raise PeerClosed(message.get("code", 1005), message.get("reason") or "")
        raise RuntimeError(f"Unexpected ASGI message {message['type']!r} on an open WebSocket")

    async def send(self, message: str | bytes) -> None:
        """Send ``websocket.send``; a server that reports the connection gone means the peer left."""
        try:
            if type(message) is str:
                await self._send({"type": "websocket.send", "text": message})
            else:
                await self._send({"type": "websocket.send", "bytes": message})
        except _GONE as exc:
            raise PeerClosed(1006, "") from exc
        # A server may drop a send without a checkpoint once the peer has gone
        # (hypercorn does): a loop that only sends would then never let another
        # task run, the stand-in reader that would see the disconnect included,
        # and the whole server would freeze. A write that went out has yielded
        # already, so one checkpoint every SENDS_PER_CHECKPOINT sends is enough
        # to end such a loop; one per send cost a tenth of a fan-out's rate.
        self._sends += 1
        if self._sends >= SENDS_PER_CHECKPOINT:
            self._sends = 0
            await trio.lowlevel.checkpoint()

    def write_now(self, message: str | bytes) -> bool:
        """An ASGI send is a coroutine: never written at once."""
        return False

    async def close(self, code: int, reason: str) -> None:
        """Send ``websocket.close`` (a 403 refusal when not yet accepted)."""
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except _GONE as exc:
            raise PeerClosed(1006, "") from exc

    async def finish(self) -> None:
        """After the handler: discard messages until ``websocket.disconnect`` (the caller bounds it).

        Called once the app's close frame is out and the peer's is not in, so that the
        server ends the connection when the peer has answered, as RFC 6455 has it, and
        in one place: hypercorn (0.18, Trio) shuts the socket down when the app returns
        without taking its send lock, and when that meets its own answer to a close the
        client sent at the same moment, the ``BusyResourceError`` ends its worker process.
        """
        while (await self._receive())["type"] != "websocket.disconnect":
            pass

    async def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Send the denial response through the ``websocket.http.response`` extension."""
        await self._send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await self._send({"type": "websocket.http.response.body", "body": body, "more_body": False})
