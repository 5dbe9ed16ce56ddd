"""The ``WebSocket`` a handler talks to, whatever server carries it.

State machine (``application_state`` is what we sent, ``client_state`` what we
know of the peer)::

    application: CONNECTING --accept--> CONNECTED --close--> DISCONNECTED
                 CONNECTING --close/deny-----------------> DISCONNECTED / RESPONSE
    client:      CONNECTING --accept--> CONNECTED --peer closed--> DISCONNECTED

Every illegal call raises ``RuntimeError`` saying what to do instead. Once the
peer has gone, every ``receive_*`` and ``send_*`` raises ``WebSocketDisconnect``
with the peer's close code, so ``except WebSocketDisconnect`` ends a handler
cleanly whichever call noticed first. After the application's own ``close``
(perhaps from another task), ``receive_*`` raises ``WebSocketDisconnect`` with
that code too, while ``send_*`` is a misuse (``RuntimeError``). When the server
is going away (shutdown), both raise ``WebSocketDisconnect(1001)``.

Receiving has one reader at a time: the handler inside ``receive_*``, a task in
``wait_disconnected``, or the *stand-in reader* that the connection registry
starts for a handler that has not asked for a message for a while (it only
sends, or waits on something else), so that its peer's close is seen on every
server. Messages read ahead wait in order for the next ``receive_*``.

The functions at the end of the module are the framework's side of a
``WebSocket`` (the connection runner and the hub use them); applications never
need them.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import trio

from trioapi import _access
from trioapi import messages as _messages
from trioapi.exceptions import WebSocketException
from trioapi.requests import HTTPConnection
from trioapi.transports import PeerClosed, WebSocketTransport
from trioapi.transports.asgi import ASGITransport

if TYPE_CHECKING:
    from trioapi._types import Message, Receive, Scope, Send
    from trioapi.responses import Response

__all__ = [
    "InvalidMessageData",
    "MessageTooBig",
    "UnexpectedMessageType",
    "WebSocket",
    "WebSocketDisconnect",
    "WebSocketDisconnected",
    "WebSocketState",
]

logger = logging.getLogger("trioapi")

_Model = TypeVar("_Model")

#: RFC 6455 limits a close frame's payload to 125 bytes, two of which hold the code.
MAX_CLOSE_REASON_BYTES = 123

#: Starlette's words, which ported tests match.
_NO_DENIAL_RESPONSES = "The server doesn't support the Websocket Denial Response extension."

#: How much is read ahead for a handler that is not receiving, before reading
#: stops and TCP pushes back on the peer: this many messages, or this many
#: characters and bytes of them (one message over it is still taken, so a client
#: holds at most about one message of the server's largest more than this).
READ_AHEAD_LIMIT = 64
READ_AHEAD_SIZE = 1024 * 1024

# Who is reading the transport (``WebSocket._reader``).
_NOBODY: Final = 0
_HANDLER: Final = 1  # a receive_* / receive() call
_WATCHER: Final = 2  # wait_disconnected()
_STAND_IN: Final = 3  # the registry's stand-in reader: steps aside when the handler receives


class WebSocketState(enum.Enum):
    """Where one side of the connection is in its life."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 3
    #: The handshake was refused with an HTTP response instead of being accepted.
    RESPONSE = 4


class WebSocketDisconnect(Exception):
    """The peer has gone. ``code`` is its close code (1006 when the connection broke)."""

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason or ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


class WebSocketDisconnected(RuntimeError):
    """A WebSocket was used where its state does not allow it: receiving before ``accept``,
    sending after the application's ``close``, ``receive()`` after its disconnect message.

    A ``RuntimeError``, as in Starlette: a bug in the handler, not the peer's doing
    (the peer leaving is ``WebSocketDisconnect``).
    """


class UnexpectedMessageType(WebSocketException, TypeError):
    """A text frame arrived where binary was expected, or the reverse.

    Left uncaught it closes the connection with 1003 (Unsupported Data).
    """

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(1003, f"expected a {expected} message, got {got}")


class InvalidMessageData(WebSocketException, ValueError):
    """A message was not valid JSON or not valid UTF-8.

    Left uncaught it closes the connection with 1007 (Invalid Frame Payload Data).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(1007, reason)


class MessageTooBig(WebSocketException):
    """A message was longer than the app's ``max_message_size``.

    Left uncaught it closes the connection with 1009 (Message Too Big). The
    server's own limit (``ServerConfig.max_message_size``) closes with 1009
    before the message is even assembled; this one lets an app be stricter.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(1009, f"message of {size} exceeds the limit of {limit}")


def truncate_reason(reason: str | None) -> str:
    """Cut a close reason to 123 UTF-8 bytes at a character boundary."""
    if not reason:
        return ""
    encoded = reason.encode("utf-8")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


def _load_json(text: str) -> Any:
    """Parse a received JSON message; anything a client can get wrong is ``InvalidMessageData``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessageData(f"invalid JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise InvalidMessageData(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidMessageData("invalid JSON: nested too deeply") from None
    if "\\ud" in text or "\\uD" in text:
        # A \uXXXX escape of a surrogate: legal JSON syntax, but a lone one is no
        # character at all, and could never be sent back in a text frame.
        try:
            _dump_json(value).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidMessageData("invalid JSON: a lone surrogate escape is not a character") from None
    return value


def _dump_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _check_mode(mode: str) -> None:
    if mode != "text" and mode != "binary":
        raise RuntimeError(f'The "mode" argument must be "text" or "binary", not {mode!r}')


def _kind(message: str | bytes) -> str:
    return "text" if type(message) is str else "binary"


class WebSocket(HTTPConnection):
    """One WebSocket connection, from handshake to close.

    Build it from an ASGI scope (``WebSocket(scope, receive, send)``), or let
    trioapi build it for a route. Inside a trioapi app each connection has a
    nursery of its own (``websocket.nursery``): ``start_soon`` runs tasks there,
    cancelled when the handler finishes, and the connection ends only once they have.
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive | None = None,
        send: Send | None = None,
        *,
        transport: WebSocketTransport | None = None,
    ) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"WebSocket needs a 'websocket' scope, got {scope['type']!r}")
        super().__init__(scope)
        if transport is None:
            if receive is None or send is None:
                raise TypeError("WebSocket needs receive and send callables, or a transport")
            transport = ASGITransport(scope, receive, send)
        self._transport = transport
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING
        self.accepted_subprotocol: str | None = None
        #: Longer messages raise ``MessageTooBig`` (close 1009); the app sets it
        #: from ``TrioAPI(max_message_size=...)``. Length is ``len()``: characters
        #: for text, bytes for binary.
        self.max_message_size: int | None = None
        # How the conversation ended, as (code, reason): the peer's close (or 1006
        # when the connection broke), the application's close, the server going away.
        # Not the PeerClosed itself, whose traceback holds frames that hold this
        # WebSocket: a cycle only the garbage collector could free.
        self._peer_close: tuple[int, str] | None = None
        self._local_close: tuple[int, str] | None = None
        self._going_away: int | None = None
        # Receiving: who reads the transport now, how often the handler asked for
        # a message (the registry's idle check), messages read ahead for it, the
        # parking lot where readers wait their turn and the stand-in's cancel scope.
        # The last three are made on first need: most connections never need them.
        self._reader = _NOBODY
        self._receives = 0  # receive_* calls: the registry's idle check, the stand-in's stepping aside
        self._receives_seen = -1  # what the idle check saw last time
        self._messages_in = 0  # messages the handler got, and ...
        self._messages_out = 0  # ... sent: for the connection's log line
        # Who ended the conversation first: "client", "app" or "server"; and the status
        # of a refused handshake.
        self._closed_by: str | None = None
        self._refused: int | None = None
        self._accepted = False
        self._pending: deque[str | bytes] | None = None
        self._pending_size = 0  # the length of the messages in _pending, summed
        self._lot: trio.lowlevel.ParkingLot | None = None
        self._stand_in: trio.CancelScope | None = None
        # The raw ASGI-message API: whether receive() has reported the disconnect,
        # and a denial response being assembled from its start and body messages.
        self._disconnect_reported = False
        self._denial: tuple[int, list[tuple[bytes, bytes]], bytearray] | None = None
        # The connection's nursery, opened by the connection runner (trioapi._connection).
        self._nursery: trio.Nursery | None = None

    # -- handshake -----------------------------------------------------------

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return list(self.scope.get("subprotocols", ()))

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Complete the handshake, choosing ``subprotocol`` and adding ``headers`` to the 101.

        Raises ``RuntimeError`` if called twice, after ``close``, or with a
        subprotocol the client did not offer (a client would fail the handshake).
        """
        if self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError(
                f"accept() called on a WebSocket that is already {self.application_state.name}; "
                "call it once, before sending or receiving"
            )
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise RuntimeError(
                f"accept(subprotocol={subprotocol!r}): the client offered {self.subprotocols!r}; "
                "choose one of those, or None"
            )
        try:
            await self._transport.accept(subprotocol, list(headers or ()))
        except PeerClosed as exc:
            self._on_peer_closed(exc)
            raise WebSocketDisconnect(exc.code, exc.reason) from None
        self.accepted_subprotocol = subprotocol
        self.application_state = WebSocketState.CONNECTED
        self.client_state = WebSocketState.CONNECTED
        self._accepted = True
        _access.websocket_accepted(self.scope, subprotocol)

    # -- receiving -----------------------------------------------------------

    def _check_can_receive(self) -> None:
        state = self.application_state
        if state is not WebSocketState.CONNECTED or self._going_away is not None:
            if self._peer_close is None and self._going_away is None:
                if state is WebSocketState.CONNECTING:
                    raise WebSocketDisconnected(
                        'WebSocket is not connected. Need to call "accept" first: '
                        'call "await websocket.accept()" before receiving'
                    )
                if state is WebSocketState.RESPONSE:
                    raise WebSocketDisconnected(
                        "WebSocket is not connected: the handshake was refused with an HTTP response"
                    )
            # The peer left, the server is going away, or the application closed
            # (perhaps from another task, a hub dropping a slow member).
            raise self._disconnect()

    def _on_peer_closed(self, exc: PeerClosed) -> None:
        if self._peer_close is None:
            self._peer_close = (exc.code, exc.reason)
            if self._closed_by is None:
                self._closed_by = "client"
        self.client_state = WebSocketState.DISCONNECTED
        if self.application_state is WebSocketState.CONNECTED:
            # Nothing more can be sent; a close frame would only be refused.
            self.application_state = WebSocketState.DISCONNECTED
        if self._lot:
            self._lot.unpark_all()

    def _disconnect(self) -> WebSocketDisconnect:
        """The exception that describes why this connection is gone."""
        if self._going_away is not None:
            return WebSocketDisconnect(self._going_away, "server shutting down")
        if self._peer_close is not None:
            return WebSocketDisconnect(*self._peer_close)
        return WebSocketDisconnect(*(self._local_close or (1000, "")))

    def _parking_lot(self) -> trio.lowlevel.ParkingLot:
        """Where readers wait for the one reading; made on first need, as most sockets never need it."""
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        return self._lot

    def _shutdown_while_reading(self) -> WebSocketDisconnect | None:
        """For a receive cancelled by the server's shutdown, the ``WebSocketDisconnect`` to raise instead."""
        nursery = self._nursery
        if self._going_away is None and nursery is not None and _cancelled_above(nursery.parent_task):
            # Cancelled by the server, not by the handler's own scopes nor by its
            # connection's nursery: hypercorn does this at the end of its graceful timeout.
            self._go_away(1001)
        if self._going_away is not None:
            # The server is shutting down and cancelled this receive so the
            # handler can see why; its cancel scope stays cancelled.
            return self._disconnect()
        return None

    async def _next_message(self) -> str | bytes:
        """The next message for the handler: one read ahead first, else one from the transport."""
        self._receives += 1
        while True:
            # Messages read ahead come first, even after the peer's close:
            # nothing the peer sent is lost.
            if self._pending:
                message = self._pending.popleft()
                self._pending_size -= len(message)
                if self._lot:
                    self._lot.unpark_all()
                break
            self._check_can_receive()
            if self._reader is _NOBODY:
                # Read here rather than in a helper: every idle connection keeps
                # the frames of its await chain, so the chain stays short.
                self._reader = _HANDLER
                try:
                    message = await self._transport.receive()
                except PeerClosed as exc:
                    self._on_peer_closed(exc)
                    raise self._disconnect() from None
                except trio.Cancelled:
                    if (shutdown := self._shutdown_while_reading()) is None:
                        raise
                    raise shutdown from None
                finally:
                    self._reader = _NOBODY
                    if self._lot:
                        self._lot.unpark_all()
                break
            if self._reader is _STAND_IN and self._stand_in is not None:
                self._stand_in.cancel()  # the handler is back: the stand-in steps aside
            # Another reader has the transport: wait for its message or its leaving.
            await self._parking_lot().park()
        self._messages_in += 1
        if self.max_message_size is not None and len(message) > self.max_message_size:
            raise MessageTooBig(len(message), self.max_message_size)
        return message

    def _read_ahead_full(self) -> bool:
        """Whether enough has been read ahead for now (``READ_AHEAD_LIMIT``, ``READ_AHEAD_SIZE``)."""
        pending = self._pending
        return pending is not None and (
            len(pending) >= READ_AHEAD_LIMIT or self._pending_size >= READ_AHEAD_SIZE
        )

    async def _read_ahead(self, reader: int) -> bool:
        """Read one message into the queue for the handler, as ``reader``; ``False`` once there is no more.

        Returns ``True`` without a message when another reader has the transport
        (after waiting for it), or when the handler took over from the stand-in.
        """
        if self._reader is not _NOBODY:
            await self._parking_lot().park()
            return True
        try:
            self._check_can_receive()
        except WebSocketDisconnect:
            return False
        self._reader = reader
        try:
            with trio.CancelScope() as scope:
                if reader is _STAND_IN:
                    self._stand_in = scope
                message = await self._transport.receive()
        except PeerClosed as exc:
            self._on_peer_closed(exc)
            return False
        finally:
            self._reader = _NOBODY
            self._stand_in = None
            if self._lot:
                self._lot.unpark_all()
        if scope.cancelled_caught:
            return True
        if self._pending is None:
            self._pending = deque()
        self._pending.append(message)
        self._pending_size += len(message)
        if self._lot:
            self._lot.unpark_all()
        return True

    async def receive_text(self) -> str:
        """The next message, which must be a text frame (else ``UnexpectedMessageType``, 1003)."""
        message = await self._next_message()
        if type(message) is not str:
            raise UnexpectedMessageType("text", _kind(message))
        return message

    async def receive_bytes(self) -> bytes:
        """The next message, which must be a binary frame (else ``UnexpectedMessageType``, 1003)."""
        message = await self._next_message()
        if isinstance(message, str):
            raise UnexpectedMessageType("binary", "text")
        return message

    async def receive_json(self, mode: str = "text") -> Any:
        """The next message parsed as JSON, from a text frame or (``mode="binary"``) UTF-8 bytes.

        Invalid JSON or UTF-8 raises ``InvalidMessageData`` (uncaught: close 1007).
        """
        _check_mode(mode)
        message = await self._next_message()
        if mode == "text":
            if type(message) is not str:
                raise UnexpectedMessageType("text", _kind(message))
            text = message
        else:
            if isinstance(message, str):
                raise UnexpectedMessageType("binary", "text")
            try:
                text = message.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidMessageData("message is not valid UTF-8") from None
        return _load_json(text)

    async def iter_text(self) -> AsyncIterator[str]:
        """Text messages until the peer disconnects (then the loop just ends)."""
        try:
            while True:
                yield await self.receive_text()
        except WebSocketDisconnect:
            pass

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Binary messages until the peer disconnects (then the loop just ends)."""
        try:
            while True:
                yield await self.receive_bytes()
        except WebSocketDisconnect:
            pass

    async def iter_json(self, mode: str = "text") -> AsyncIterator[Any]:
        """JSON messages until the peer disconnects (then the loop just ends)."""
        try:
            while True:
                yield await self.receive_json(mode)
        except WebSocketDisconnect:
            pass

    async def wait_disconnected(self) -> WebSocketDisconnect:
        """Return once the peer has gone, with the ``WebSocketDisconnect`` that says how.

        A handler that only pushes data never calls ``receive``; run this in a
        task (or race it against the push loop) to end as soon as the peer
        leaves. While nothing else is receiving, it reads ahead and keeps up to
        ``READ_AHEAD_LIMIT`` messages (``READ_AHEAD_SIZE`` of them) for the next ``receive_*``, so no message
        is lost. It also returns when the application closes.
        """
        while self.application_state is not WebSocketState.DISCONNECTED:
            if self.application_state is not WebSocketState.CONNECTED:
                if self.application_state is WebSocketState.RESPONSE:
                    break
                raise RuntimeError('Cannot wait for a disconnect before "await websocket.accept()"')
            if self._read_ahead_full():
                await self._parking_lot().park()
            elif not await self._read_ahead(_WATCHER):
                break
        return self._disconnect()

    # -- the ASGI messages, as Starlette's WebSocket has them ---------------------

    async def receive(self) -> Message:
        """The next event as an ASGI message: ``websocket.connect``, ``.receive`` or ``.disconnect``.

        Starlette's low-level API, for apps that mix text and binary frames:
        ``{"type": "websocket.receive", "text": ...}`` or ``{..., "bytes": ...}``;
        before ``accept``, the client's ``websocket.connect``; once the peer has
        gone, ``{"type": "websocket.disconnect", "code": ..., "reason": ...}``
        once, then ``RuntimeError``. The typed ``receive_text`` and friends are
        faster and raise ``WebSocketDisconnect`` instead.
        """
        if self.client_state is WebSocketState.CONNECTING:
            if self.application_state is WebSocketState.CONNECTING:
                try:
                    await self._transport.connect()
                except PeerClosed as exc:
                    self._on_peer_closed(exc)
                    self._disconnect_reported = True
                    return _disconnect_message(exc.code, exc.reason)
                self.client_state = WebSocketState.CONNECTED
                return {"type": "websocket.connect"}
            raise RuntimeError(
                'Cannot call "receive" here: the handshake was refused or closed before it was accepted'
            )
        if self._disconnect_reported:
            raise WebSocketDisconnected('Cannot call "receive" once a disconnect message has been received.')
        if self.application_state is WebSocketState.CONNECTING:
            raise WebSocketDisconnected(
                'WebSocket is not connected. Need to call "accept" first: '
                'call "await websocket.accept()" before receiving a message'
            )
        try:
            message = await self._next_message()
        except WebSocketDisconnect as gone:
            self._disconnect_reported = True
            return _disconnect_message(gone.code, gone.reason)
        if type(message) is str:
            return {"type": "websocket.receive", "text": message}
        return {"type": "websocket.receive", "bytes": message}

    async def send(self, message: Message) -> None:
        """Send one ASGI message: ``websocket.accept``, ``.send``, ``.close`` or a denial response.

        Starlette's low-level API, with its state rules: before ``accept`` only
        ``websocket.accept``, ``websocket.close`` or ``websocket.http.response.start``;
        after it ``websocket.send`` or ``websocket.close``; after a response start
        only ``websocket.http.response.body``; nothing once closed. Misuse raises
        ``RuntimeError`` naming what was expected.
        """
        kind = message["type"]
        state = self.application_state
        if state is WebSocketState.CONNECTING:
            if kind == "websocket.accept":
                await self.accept(message.get("subprotocol"), message.get("headers"))
            elif kind == "websocket.close":
                await self.close(message.get("code", 1000), message.get("reason"))
            elif kind == "websocket.http.response.start":
                if not self._transport.can_deny:
                    raise RuntimeError(_NO_DENIAL_RESPONSES)
                self.application_state = WebSocketState.RESPONSE
                self._denial = (message["status"], list(message.get("headers") or ()), bytearray())
            else:
                raise RuntimeError(
                    'Expected ASGI message "websocket.accept", "websocket.close" or '
                    f'"websocket.http.response.start", but got {kind!r}'
                )
        elif state is WebSocketState.CONNECTED:
            if kind == "websocket.send":
                text = message.get("text")
                await self._send(text if text is not None else bytes(message.get("bytes") or b""))
            elif kind == "websocket.close":
                await self.close(message.get("code", 1000), message.get("reason"))
            else:
                raise RuntimeError(
                    f'Expected ASGI message "websocket.send" or "websocket.close", but got {kind!r}'
                )
        elif state is WebSocketState.RESPONSE and self._denial is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f'Expected ASGI message "websocket.http.response.body", but got {kind!r}')
            self._denial[2].extend(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_denial()
        else:
            raise WebSocketDisconnected('Cannot call "send" once a close message has been sent.')

    async def _send_denial(self) -> None:
        assert self._denial is not None
        status, headers, body = self._denial
        self._denial = None
        self._refused = status
        try:
            await self._transport.deny(status, headers, bytes(body))
        except PeerClosed as exc:  # the client left before hearing no: nothing to refuse
            self._on_peer_closed(exc)

    # -- sending -------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self.application_state is not WebSocketState.CONNECTED or self._going_away is not None:
            if self._going_away is not None or self._peer_close is not None:
                raise self._disconnect()
            if self.application_state is WebSocketState.CONNECTING:
                raise RuntimeError('Cannot send before the handshake: call "await websocket.accept()" first')
            raise WebSocketDisconnected(
                'Cannot call "send" once a close message has been sent: this WebSocket was '
                "already closed by the application"
            )

    async def _send(self, message: str | bytes) -> None:
        self._check_can_send()
        try:
            await self._transport.send(message)
        except PeerClosed as exc:
            self._on_peer_closed(exc)
            raise self._disconnect() from None
        self._messages_out += 1

    async def send_text(self, data: str) -> None:
        """Send ``data`` as a text frame."""
        if type(data) is not str:
            raise TypeError(f"send_text() takes a str, not {type(data).__name__}")
        await self._send(data)

    async def send_bytes(self, data: bytes) -> None:
        """Send ``data`` as a binary frame."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"send_bytes() takes bytes, not {type(data).__name__}")
        await self._send(bytes(data))

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as compact JSON (non-ASCII kept), in a text or (``"binary"``) binary frame."""
        _check_mode(mode)
        text = _dump_json(data)
        await self._send(text if mode == "text" else text.encode("utf-8"))

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection with ``code``; idempotent.

        Before ``accept`` this refuses the handshake (HTTP 403). A ``reason`` longer
        than 123 UTF-8 bytes is cut at a character boundary.
        """
        state = self.application_state
        if state is not WebSocketState.CONNECTING and state is not WebSocketState.CONNECTED:
            if self._denial is not None:  # a response started with send(): finish it, empty
                await self._send_denial()
            return
        self.application_state = WebSocketState.DISCONNECTED
        self._local_close = (code, truncate_reason(reason))
        if self._closed_by is None:
            self._closed_by = "app"
        if state is WebSocketState.CONNECTING:
            self._refused = 403  # what a close before accept is on the wire
        try:
            await self._transport.close(*self._local_close)
        except PeerClosed as exc:
            # Gone already: nothing to close, or no handshake left to refuse.
            self._on_peer_closed(exc)
        if self._lot:
            self._lot.unpark_all()

    async def deny(
        self,
        status_code: int,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> None:
        """Refuse the handshake with an HTTP response.

        Where the server has no denial responses (ASGI servers without the
        ``websocket.http.response`` extension) the handshake is refused with the
        server's bare 403 instead.
        """
        if self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError(
                "deny() can only refuse a handshake that has not been accepted or closed; "
                "after accept, use close(code, reason)"
            )
        if not self._transport.can_deny:
            await self.close(1008)
            return
        self.application_state = WebSocketState.RESPONSE
        self._denial = (status_code, list(headers or ()), bytearray(body))
        await self._send_denial()

    async def send_denial_response(self, response: Response) -> None:
        """Refuse the handshake with ``response`` (status, headers and body, streamed ones too).

        The response runs as it would for an HTTP request, its ``http.response.*``
        messages sent as the ``websocket.http.response.*`` of a denial. A server
        without denial responses (an ASGI server without the
        ``websocket.http.response`` extension) makes it raise ``RuntimeError``, as
        in Starlette; ``deny()`` refuses on every server.
        """
        if self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError(
                "send_denial_response() can only refuse a handshake that has not been accepted or closed"
            )
        if not self._transport.can_deny:
            raise RuntimeError(_NO_DENIAL_RESPONSES)

        async def receive() -> Message:
            return {"type": "http.disconnect"}

        # A response called with a WebSocket scope sends itself as a denial (Starlette's do too).
        await response(self.scope, receive, self.send)

    # -- connection-scoped concurrency ---------------------------------------

    @property
    def nursery(self) -> trio.Nursery:
        """This connection's nursery: tasks here are cancelled when the handler finishes.

        For ``nursery.start(...)`` and what ``start_soon`` does not cover. An
        exception escaping a task started here directly ends the connection with
        1011, like one from the handler; prefer ``start_soon``, which also lets a
        task end quietly with ``WebSocketDisconnect``.
        """
        if self._nursery is None:
            raise RuntimeError("websocket.nursery is only open while a handler served by a trioapi app runs")
        return self._nursery

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: object = None) -> None:
        """Run ``fn(*args)`` in a task of this connection's nursery.

        The task is cancelled when the handler finishes, and the connection does
        not end before it has. If it raises, the connection is closed with 1011
        and the error is logged, like an error in the handler itself;
        ``WebSocketDisconnect`` just ends the task.
        """
        self.nursery.start_soon(_connection_task, fn, args, name=name or fn)

    def __repr__(self) -> str:
        return f"<WebSocket {self.scope.get('path', '?')} {self.application_state.name}>"

    # -- typed messages: thin wrappers over trioapi.messages --------------------
    # Plain functions returning the coroutine: awaiting them adds no frame per message.

    @overload
    def receive_model(self, model: type[_Model], mode: str = "text") -> Coroutine[Any, Any, _Model]: ...
    @overload
    def receive_model(self, model: Any = None, mode: str = "text") -> Coroutine[Any, Any, Any]: ...
    def receive_model(self, model: Any = None, mode: str = "text") -> Coroutine[Any, Any, Any]:
        """The next JSON message converted to ``model`` (default: the route's ``receives``).

        A message that does not fit raises ``trioapi.messages.MessageValidationError``
        (uncaught: close 1007 naming the first bad field), unless the route has an
        ``on_invalid`` handler: that one answers, and the next message is awaited.
        """
        return _messages.receive_model(self, model, mode)

    @overload
    def iter_models(self, model: type[_Model], mode: str = "text") -> AsyncIterator[_Model]: ...
    @overload
    def iter_models(self, model: Any = None, mode: str = "text") -> AsyncIterator[Any]: ...
    async def iter_models(self, model: Any = None, mode: str = "text") -> AsyncIterator[Any]:
        """Messages converted to ``model`` (default: the route's ``receives``) until the peer leaves."""
        try:
            while True:
                yield await _messages.receive_model(self, model, mode)
        except WebSocketDisconnect:
            pass

    def send_model(self, message: Any, mode: str = "text") -> Coroutine[Any, Any, None]:
        """Send ``message`` (an attrs, dataclass, pydantic... instance) as JSON, text or ``"binary"``."""
        return self.send_json(_messages.jsonable(message), mode)

    # -- for the framework (see the functions below) ------------------------------

    def _go_away(self, code: int) -> None:
        if self._going_away is None:
            self._going_away = code
            if self._closed_by is None:
                self._closed_by = "server"
            if self._lot:
                self._lot.unpark_all()


async def _connection_task(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    """A task from ``websocket.start_soon``: the peer leaving ends it quietly."""
    with contextlib.suppress(WebSocketDisconnect):  # the peer left: the task's work is over
        await fn(*args)


def _disconnect_message(code: int, reason: str) -> Message:
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


def _cancelled_above(task: trio.lowlevel.Task) -> bool:
    """Whether a nursery enclosing ``task`` (the server's, not the handler's) has been cancelled."""
    nursery = task.parent_nursery
    while nursery is not None:
        if nursery.cancel_scope.cancel_called:
            return True
        nursery = nursery.parent_task.parent_nursery
    return False


# -- the framework's side of a WebSocket --------------------------------------------
#
# Used by trioapi._connection (the connection runner and registry) and
# trioapi.broadcast.hub, so that no other module touches a WebSocket's state.


def attach_nursery(websocket: WebSocket, nursery: trio.Nursery | None) -> None:
    """Give ``websocket`` its connection's nursery (``None`` once it has closed)."""
    websocket._nursery = nursery


def go_away(websocket: WebSocket, code: int = 1001) -> None:
    """Mark the connection as ended by the server: receives and sends raise ``WebSocketDisconnect(code)``."""
    websocket._go_away(code)


def going_away(websocket: WebSocket) -> int | None:
    """The code the server ended the connection with, if it did."""
    return websocket._going_away


def still_open(websocket: WebSocket) -> bool:
    """Whether ``close`` would still send something: a close frame, a refusal, or a started denial."""
    state = websocket.application_state
    return (
        state is WebSocketState.CONNECTED
        or state is WebSocketState.CONNECTING
        or websocket._denial is not None
    )


def closed_by_application(websocket: WebSocket) -> bool:
    """Whether the application sent a close frame the peer has not answered yet."""
    return websocket._local_close is not None and websocket.client_state is WebSocketState.CONNECTED


async def finish_closing(websocket: WebSocket) -> None:
    """After the handler: wait until the peer answers the application's close frame (the caller bounds it).

    The close handshake RFC 6455 asks for; servers end the connection once it is done.
    """
    if closed_by_application(websocket):
        try:
            await websocket._transport.finish()
        finally:
            websocket.client_state = WebSocketState.DISCONNECTED


def needs_stand_in(websocket: WebSocket) -> bool:
    """Whether the handler has not asked for a message since the last call, and nobody reads for it.

    Called by the connection registry every ``IDLE_CHECK_INTERVAL``: such a
    handler gets a stand-in reader (``read_for_idle_handler``).
    """
    receives = websocket._receives
    idle = receives == websocket._receives_seen
    websocket._receives_seen = receives
    return (
        idle
        and websocket._nursery is not None
        and websocket._reader is _NOBODY
        and websocket.application_state is WebSocketState.CONNECTED
        and websocket._going_away is None
        and not websocket._read_ahead_full()
    )


async def read_for_idle_handler(websocket: WebSocket) -> None:
    """Read for a handler that is busy elsewhere, until it receives again or the peer leaves.

    Its peer's pings and close are answered and seen (on every transport), so
    a handler that only sends learns of a vanished peer at its next send; up to
    ``READ_AHEAD_LIMIT`` messages (``READ_AHEAD_SIZE`` of them) wait for the handler's next ``receive_*``.
    """
    start = websocket._receives
    while websocket._receives == start:
        if websocket._read_ahead_full():
            return  # enough in hand: let TCP push back; the next look starts a new stand-in
        if websocket._reader is not _NOBODY or not await websocket._read_ahead(_STAND_IN):
            return


def message_sender(websocket: WebSocket) -> tuple[Callable[[str | bytes], Awaitable[None]], bool]:
    """For a fan-out: the coroutine that sends a ready-made frame (``str`` text, ``bytes`` binary),
    and whether ``write_now`` can ever write without waiting on this transport."""
    return websocket._send, websocket._transport.writes_now


def write_now(websocket: WebSocket, message: str | bytes) -> bool:
    """Send ``message`` without waiting if the transport can (``writes_now``); ``False`` if not sent."""
    if websocket.application_state is not WebSocketState.CONNECTED or websocket._going_away is not None:
        return False
    if websocket._transport.write_now(message):
        websocket._messages_out += 1
        return True
    return False


def log_ending(websocket: WebSocket, duration: float) -> None:
    """Write the access log's line for a connection that has ended: closed, or refused."""
    if websocket._refused is not None:
        _access.websocket_refused(websocket.scope, websocket._refused)
        return
    if not websocket._accepted:
        return  # neither accepted nor refused: the client left during the handshake
    by = websocket._closed_by or "app"
    if by == "client" and websocket._peer_close is not None:
        code = websocket._peer_close[0]
    elif by == "server" and websocket._going_away is not None:
        code = websocket._going_away
    else:
        code = (websocket._local_close or (1000, ""))[0]
    _access.websocket_closed(
        websocket.scope, code, by, duration, websocket._messages_in, websocket._messages_out
    )
