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
that code too, while ``send_*`` is a misuse (``RuntimeError``).
"""

from __future__ import annotations

import enum
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio

from trioapi import messages as _messages
from trioapi.exceptions import WebSocketException
from trioapi.requests import HTTPConnection
from trioapi.transports import PeerClosed, WebSocketTransport
from trioapi.transports.asgi import ASGITransport

if TYPE_CHECKING:
    from trioapi._types import Receive, Scope, Send
    from trioapi.responses import Response

__all__ = [
    "InvalidMessageData",
    "MessageTooBig",
    "UnexpectedMessageType",
    "WebSocket",
    "WebSocketDisconnect",
    "WebSocketState",
]

logger = logging.getLogger("trioapi")

_Model = TypeVar("_Model")

#: RFC 6455 limits a close frame's payload to 125 bytes, two of which hold the code.
MAX_CLOSE_REASON_BYTES = 123

#: How many messages ``wait_disconnected`` reads ahead for a handler that is not
#: receiving, before it stops reading and lets TCP push back on the peer.
READ_AHEAD_LIMIT = 64


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
    trioapi build it for a route. Inside a trioapi app, ``start_soon`` runs tasks
    that are cancelled when the handler finishes and end before the connection does.
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
        # The peer's (code, reason): not the PeerClosed itself, whose traceback holds
        # frames that hold this WebSocket, a cycle only the GC could free.
        self._peer_close: tuple[int, str] | None = None
        self._local_close: tuple[int, str] | None = None
        self._going_away: int | None = None
        # Receiving is single-consumer: whoever is inside transport.receive()
        # owns it; others park until it is done. Messages read ahead by
        # wait_disconnected() wait in _pending for the handler. Both are made
        # on first need: most connections never need them.
        self._reading = False
        self._pending: deque[str | bytes] | None = None
        self._lot: trio.lowlevel.ParkingLot | None = None
        # Set by the connection runner (trioapi._connection) when an app serves
        # this socket: its task, the scope its session runs in, and the nursery
        # that hosts start_soon tasks (made into a _TaskSet on first use).
        self._runner: trio.lowlevel.Task | None = None
        self._session_scope: trio.CancelScope | None = None
        self._host: trio.Nursery | None = None
        self._tasks: _TaskSet | None = None
        self._failure: BaseException | None = None

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

    # -- receiving -----------------------------------------------------------

    def _check_can_receive(self) -> None:
        state = self.application_state
        if state is not WebSocketState.CONNECTED or self._going_away is not None:
            if self._peer_close is None and self._going_away is None:
                if state is WebSocketState.CONNECTING:
                    raise RuntimeError(
                        'Cannot receive before the handshake: call "await websocket.accept()" first'
                    )
                if state is WebSocketState.RESPONSE:
                    raise RuntimeError("Cannot receive: the handshake was refused with an HTTP response")
            # The peer left, the server is going away, or the application closed
            # (perhaps from another task, a hub dropping a slow member).
            raise self._disconnect()

    def _on_peer_closed(self, exc: PeerClosed) -> None:
        if self._peer_close is None:
            self._peer_close = (exc.code, exc.reason)
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
        """Where tasks wait for the one reading; made on first need, as most sockets never need it."""
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        return self._lot

    def _shutdown_while_reading(self) -> WebSocketDisconnect | None:
        """For a receive cancelled by the server's shutdown, the ``WebSocketDisconnect`` to raise instead."""
        if self._going_away is None and self._runner is not None and _cancelled_above(self._runner):
            # Cancelled by the server, not by the handler's own scopes:
            # hypercorn does this at the end of its graceful timeout.
            self._go_away(1001)
        if self._going_away is not None:
            # The server is shutting down and cancelled this receive so the
            # handler can see why; its cancel scope stays cancelled.
            return self._disconnect()
        return None

    async def _next_message(self, *, ahead: bool = False) -> str | bytes:
        """The next message: one read ahead first, else one from the transport, as its only reader.

        ``ahead`` (for ``wait_disconnected``) always reads the transport and skips
        the size check, which applies when the handler takes the message.
        """
        while True:
            # Messages read ahead by wait_disconnected() come first, even after
            # the peer's close: nothing the peer sent is lost.
            if self._pending and not ahead:
                message = self._pending.popleft()
                if self._lot:
                    self._lot.unpark_all()
                break
            self._check_can_receive()
            if not self._reading:
                # Read here rather than in a helper: every idle connection keeps
                # the frames of its await chain, so the chain stays short.
                self._reading = True
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
                    self._reading = False
                    if self._lot:
                        self._lot.unpark_all()
                if ahead:
                    return message
                break
            # Another task is reading (wait_disconnected() or a receive): wait for its result.
            await self._parking_lot().park()
        if self.max_message_size is not None and len(message) > self.max_message_size:
            raise MessageTooBig(len(message), self.max_message_size)
        return message

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

        A handler that only pushes data never calls ``receive``, so it would not
        notice a vanished client; run this in a task (or race it against the push
        loop) to end promptly. While nothing else is receiving, it reads ahead
        and keeps up to ``READ_AHEAD_LIMIT`` messages for the next ``receive_*``,
        so no message is lost. It also returns when the application closes.
        """
        if self._pending is None:
            self._pending = deque()
        while self.application_state is not WebSocketState.DISCONNECTED:
            if self.application_state is not WebSocketState.CONNECTED:
                if self.application_state is WebSocketState.RESPONSE:
                    break
                raise RuntimeError('Cannot wait for a disconnect before "await websocket.accept()"')
            if self._reading or len(self._pending) >= READ_AHEAD_LIMIT:
                await self._parking_lot().park()
                continue
            try:
                message = await self._next_message(ahead=True)
            except WebSocketDisconnect:
                break
            self._pending.append(message)
            if self._lot:
                self._lot.unpark_all()
        return self._disconnect()

    # -- sending -------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self.application_state is not WebSocketState.CONNECTED or self._going_away is not None:
            if self._going_away is not None or self._peer_close is not None:
                raise self._disconnect()
            if self.application_state is WebSocketState.CONNECTING:
                raise RuntimeError('Cannot send before the handshake: call "await websocket.accept()" first')
            raise RuntimeError("Cannot send: this WebSocket was already closed by the application")

    async def _send(self, message: str | bytes) -> None:
        self._check_can_send()
        try:
            await self._transport.send(message)
        except PeerClosed as exc:
            self._on_peer_closed(exc)
            raise self._disconnect() from None

    def _write_now(self, message: str | bytes) -> bool:
        """Send ``message`` without waiting if the transport can (``write_now``); ``False`` if not sent."""
        if self.application_state is not WebSocketState.CONNECTED or self._going_away is not None:
            return False
        return self._transport.write_now(message)

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
            return
        self.application_state = WebSocketState.DISCONNECTED
        self._local_close = (code, truncate_reason(reason))
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
        try:
            await self._transport.deny(status_code, list(headers or ()), body)
        except PeerClosed as exc:  # the client left before hearing no: nothing to refuse
            self._on_peer_closed(exc)

    async def send_denial_response(self, response: Response) -> None:
        """Refuse the handshake with ``response`` (status, headers and body)."""
        await self.deny(response.status_code, response.raw_headers, response.body)

    # -- connection-scoped concurrency ---------------------------------------

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: object = None) -> None:
        """Run ``fn(*args)`` in a task that is cancelled when this connection ends.

        The connection does not end before its tasks have. If a task raises, the
        connection is closed with 1011 and the error is logged, like an error in
        the handler itself; ``WebSocketDisconnect`` just ends the task.
        """
        tasks = self._tasks
        if tasks is None:
            if self._host is None:
                raise RuntimeError(
                    "websocket.start_soon() is only available while a handler served by a trioapi app runs"
                )
            tasks = self._tasks = _TaskSet(self, self._host)
        tasks.start_soon(fn, args, name or fn)

    def _task_failed(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            logger.error("Exception in a task of WebSocket %s", self.scope.get("path"), exc_info=exc)
        if self._session_scope is not None:
            self._session_scope.cancel()

    def _go_away(self, code: int = 1001) -> None:
        """Mark the connection as going away: receives and sends now raise ``WebSocketDisconnect(code)``."""
        if self._going_away is None:
            self._going_away = code

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
    def iter_models(self, model: Any = None, mode: str = "text") -> AsyncIterator[Any]:
        """Messages converted to ``model`` (default: the route's ``receives``) until the peer leaves."""
        return _messages.iter_models(self, model, mode)

    def send_model(self, message: Any, mode: str = "text") -> Coroutine[Any, Any, None]:
        """Send ``message`` (an attrs, dataclass, pydantic... instance) as JSON, text or ``"binary"``."""
        return self.send_json(_messages.jsonable(message), mode)


def _cancelled_above(task: trio.lowlevel.Task) -> bool:
    """Whether a nursery enclosing ``task`` (the server's, not the handler's) has been cancelled."""
    nursery = task.parent_nursery
    while nursery is not None:
        if nursery.cancel_scope.cancel_called:
            return True
        nursery = nursery.parent_task.parent_nursery
    return False


class _TaskSet:
    """The tasks one connection started: hosted in a nursery, bounded by the connection.

    Each task runs in a cancel scope of its own, so that ending the connection
    cancels exactly its tasks; ``aclose`` then waits for them, so nothing a
    connection started outlives it, as if they had been in a nursery of its own.
    """

    __slots__ = ("_closed", "_closing", "_done", "_host", "_scopes", "_websocket")

    def __init__(self, websocket: WebSocket, host: trio.Nursery) -> None:
        self._websocket = websocket
        self._host = host
        self._scopes: set[trio.CancelScope] = set()
        self._closing = False
        self._closed = False
        self._done: trio.Event | None = None

    def start_soon(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], name: object) -> None:
        if self._closed:
            raise RuntimeError("websocket.start_soon(): this connection has ended")
        scope = trio.CancelScope()
        if self._closing:
            scope.cancel()  # like a task started in a cancelled nursery
        self._host.start_soon(self._run, scope, fn, args, name=name)
        self._scopes.add(scope)

    async def _run(
        self, scope: trio.CancelScope, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        try:
            with scope:
                try:
                    await fn(*args)
                except WebSocketDisconnect:
                    pass  # the peer left: the task's work is over, which is no error
                except Exception as exc:
                    self._websocket._task_failed(exc)
        finally:
            self._scopes.discard(scope)
            if not self._scopes and self._done is not None:
                self._done.set()

    async def aclose(self) -> None:
        """Cancel every task and wait until all have finished (shielded: it is cleanup)."""
        self._closing = True
        if self._scopes:
            self._done = trio.Event()
            for scope in self._scopes:
                scope.cancel()
            with trio.CancelScope(shield=True):
                await self._done.wait()
        self._closed = True
