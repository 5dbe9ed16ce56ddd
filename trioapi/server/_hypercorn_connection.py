"""One connection served by hypercorn's per-connection server, as trioapi runs it.

``HypercornConnection`` is hypercorn's own ``TCPServer`` (HTTP/1.1, h2c, and
WebSockets through its ``WSStream`` and ASGI), with its socket I/O taken over
where hypercorn 0.18 lets one client end the process or hold memory without
bound:

- **Each request's head is read whole first** (bounded in size and time),
  the first and those that follow on a keep-alive connection. An
  upgrade request that declares a body is refused with 400 before hypercorn
  sees it: h11 would wait for the body before the 101, and hypercorn, which
  answers 400 to data that arrives before it accepts, then failed the app's
  accept with a ``LocalProtocolError`` (and its cleanup with a fatal one).
- **Nothing after an upgrade request reaches hypercorn before its response
  has gone out**: a client that sends its first frame in the same write as
  its request (or right after it) has that frame read after the 101, as if it
  had waited, instead of meeting the same 400 and failure.
- **Writes never race**: the socket is shut down (``send_eof``) under the send
  lock, so a keepalive ping or a frame going out at that moment waits instead
  of failing with ``BusyResourceError`` (which ended the process: a malformed
  close right after the 101 did it in about a second); a write that fails
  that way all the same ends this connection only.
- **Each accepted WebSocket gets trioapi's wsproto connection**
  (``_wsproto.server_connection``, through ``WebSocketHandshake``): bounded
  inflation, the message limit
  enforced before hypercorn buffers past it, and protocol errors answered
  with their close code. A connection failed that way is closed gently: our
  close frame out, our side shut, what the client still sends read and
  dropped for at most ``LINGER`` seconds (closing a socket with unread input
  makes the kernel reset it, and the reset can destroy the close frame).
- **A send after the close raises** (``TrioAPIWrapper``) instead of being
  dropped without a checkpoint, which let a send-only loop freeze the worker.
- **A connection's keepalive task ends with the connection**: hypercorn's
  ping task sleeps ``websocket_ping_interval`` between pings and kept the
  whole connection's state alive that long after its socket had closed (some
  18 KB per connection, 20 s long: under churn, hundreds of MB). Its first
  ping, which hypercorn sends with the 101, is dropped (``_wsproto._Opened``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import ssl
from typing import TYPE_CHECKING, Any, Final, cast

import h11
import trio
import wsproto.utilities
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.ws_stream import ASGIWebsocketState, Handshake, WSStream
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from wsproto.connection import Connection, ConnectionState
from wsproto.utilities import generate_accept_token

from trioapi.server._http import MAX_REQUEST_HEAD, header_lines, plain_response
from trioapi.server._wsproto import LimitedConnection, server_connection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hypercorn.config import Config
    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGISendCallable,
        ASGISendEvent,
        Scope,
    )

    from trioapi.server._listen import Address

__all__ = [
    "LINGER",
    "ConnectionContext",
    "HypercornConnection",
    "HypercornServer",
    "TrioAPIWrapper",
    "dropped",
]

logger = logging.getLogger("trioapi.hypercorn")

#: Seconds a failed WebSocket connection waits for its peer to read our close frame and hang up.
LINGER: Final = 1.0

#: What a write or read raises when the socket is gone, or (``Busy``) in use by another task.
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)

BODY_NOT_ALLOWED: Final = plain_response(400, "Bad Request", b"A WebSocket upgrade request has no body\n")


class ConnectionContext(WorkerContext):
    """hypercorn's ``WorkerContext`` for one connection: the worker's, and a ``sleep`` that ends with it.

    hypercorn's keepalive task is the one that sleeps through its context, so a
    connection that has closed lets it, and everything it holds, go at once.
    """

    def __init__(self, worker: WorkerContext) -> None:
        # Not WorkerContext.__init__: the worker's events are shared, not made anew.
        self.max_requests = worker.max_requests
        self.requests = 0
        self.terminate = worker.terminate
        self.terminated = worker.terminated
        self._worker = worker
        #: Set once the client's side has ended, or the socket has closed.
        self.ended = trio.Event()

    async def mark_request(self) -> None:
        await self._worker.mark_request()

    async def sleep(self, wait: float) -> None:  # type: ignore[override]
        with trio.move_on_after(wait):
            await self.ended.wait()


class TrioAPIWrapper(ASGIWrapper):
    """hypercorn's wrapper for an ASGI app, giving a WebSocket a ``send`` that raises once it has closed.

    hypercorn drops a message an app sends once its WebSocket is closing or
    closed, and returns without a checkpoint: a handler that only sends, with
    no other await in its loop, then ran on without ever letting another task
    run, and froze the worker. Per the ASGI spec, a send on a closed connection
    raises instead (``trio.ClosedResourceError``, which the handler sees as
    ``WebSocketDisconnect(1006)``).
    """

    async def __call__(
        self,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        stream = getattr(send, "__self__", None)
        if isinstance(stream, WSStream):
            send = _SendWhileOpen(stream, send)
        await self.app(scope, receive, send)


class _SendWhileOpen:
    """A WebSocket's ``send``: hypercorn's, or ``ClosedResourceError`` once the connection is closing."""

    __slots__ = ("send", "stream")

    def __init__(self, stream: WSStream, send: ASGISendCallable) -> None:
        self.stream = stream
        self.send = send

    async def __call__(self, message: ASGISendEvent) -> None:
        stream = self.stream
        if message["type"] == "websocket.send" and (
            stream.closed
            or (
                stream.state is ASGIWebsocketState.CONNECTED
                and stream.connection.state is not ConnectionState.OPEN
            )
        ):
            raise trio.ClosedResourceError("the WebSocket connection has closed")
        await self.send(message)


class WebSocketHandshake(Handshake):
    """hypercorn's handshake for an upgrade request, accepting it with trioapi's wsproto connection.

    ``accept`` answers as hypercorn 0.18's does (the same headers, in the same
    order, the same errors), with the connection ``_wsproto.server_connection``
    negotiates, so that hypercorn never makes one of its own to be replaced.
    """

    def __init__(
        self, headers: list[tuple[bytes, bytes]], http_version: str, connection: HypercornConnection
    ) -> None:
        super().__init__(headers, http_version)
        self._connection = connection

    def accept(
        self, subprotocol: str | None, additional_headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[int, list[tuple[bytes, bytes]], Connection]:
        headers = []
        if subprotocol is not None:
            if self.subprotocols is None or subprotocol not in self.subprotocols:
                raise ValueError("Invalid Subprotocol")
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        connection, accepts = self._connection.websocket_connection(self.extensions)
        if accepts:
            headers.append((b"sec-websocket-extensions", accepts))
        if self.key is not None:
            headers.append((b"sec-websocket-accept", generate_accept_token(self.key)))
        status_code = 200
        if self.http_version == "1.1":
            headers.extend([(b"upgrade", b"WebSocket"), (b"connection", b"Upgrade")])
            status_code = 101
        for name, value in additional_headers:
            if name == b"sec-websocket-protocol" or name.startswith(b":"):
                raise ValueError(f"Invalid additional header, {name.decode()}")
            headers.append((name, value))
        self.accepted = True
        return status_code, headers, connection


class HypercornConnection(TCPServer):
    """hypercorn's per-connection server, with trioapi's socket I/O (see the module docstring)."""

    def __init__(self, server: HypercornServer, stream: trio.abc.Stream) -> None:
        # A context of its own only where hypercorn sleeps through it: its keepalive pings.
        context = ConnectionContext(server.worker) if server.pinging else server.worker
        super().__init__(server.app, server.config, context, server.state, stream)  # type: ignore[arg-type]
        self.server = server
        #: Whether every byte now goes to hypercorn as it comes (a WebSocket, say), rather than
        #: request heads whole; and how much of a request's body is still to come.
        self.passing = False
        self.body_left = 0
        #: For an upgrade request: set once its response has gone out.
        self.responded: trio.Event | None = None
        #: hypercorn's stream for the accepted WebSocket, once there is one.
        self.websocket: WSStream | None = None
        #: Whether hypercorn's keep-alive timer may be running (it runs while no request is).
        self.idle = True
        #: Whether the socket has been closed.
        self.closed = False

    async def _read_data(self) -> None:
        buffer: bytes | None = b""
        timeout = self.config.read_timeout or math.inf
        while buffer is not None:
            # Read here, not in a helper: an idle connection keeps its reader's frames.
            try:
                with trio.fail_after(timeout):
                    data = bytes(await self.stream.receive_some(MAX_RECV))
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            if not data:  # the client's end (and of a head it had begun, if any: dropped)
                await self.protocol.handle(RawData(data))
                break
            buffer = await self._feed(buffer + data)
        await self.protocol.handle(Closed())
        # The client is gone (or will be, once answered): nothing is left for the keep-alive
        # timer to close, nor for keepalive pings to keep alive, and either would hold the
        # connection's task, its state and its socket for as long as it sleeps.
        if self.idle:
            await self.idle_task.stop()
        self._ended()

    async def _feed(self, buffer: bytes) -> bytes | None:
        """Give hypercorn what it may have of ``buffer``; return the rest (a head's start); ``None`` ends.

        Until the connection is a WebSocket (or something this does not follow:
        a chunked body, h2c, a head over ``MAX_REQUEST_HEAD``), each request's
        head is kept until it is whole, and a body is counted out, so that the
        next request's head is known when it comes. hypercorn's keep-alive timer
        bounds the wait for a head, since hypercorn has seen none of it.
        """
        while buffer:
            if self.passing:
                await self.protocol.handle(RawData(buffer))
                return b""
            if self.body_left:
                body, buffer = buffer[: self.body_left], buffer[self.body_left :]
                self.body_left -= len(body)
                await self.protocol.handle(RawData(body))
                continue
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_REQUEST_HEAD:
                    self.passing = True  # hypercorn answers it (431)
                    continue
                return buffer
            head, buffer = buffer[: end + 4], buffer[end + 4 :]
            upgrade, length = _request_kind(head)
            if upgrade:
                if length != 0:
                    await self._send(BODY_NOT_ALLOWED)
                    return None
                if not await self._upgrade(head):
                    return None
                self.passing = True
                continue
            await self.protocol.handle(RawData(head))
            if length is None:
                self.passing = True
            else:
                self.body_left = length
        return b""

    async def _upgrade(self, head: bytes) -> bool:
        """Give hypercorn an upgrade request's head, and wait for its response to go out (bounded)."""
        self.responded = responded = trio.Event()
        await self.protocol.handle(RawData(head))
        stream = getattr(self.protocol.protocol, "stream", None)
        if isinstance(stream, WSStream) and not stream.handshake.accepted:
            # The app cannot have accepted yet: it has not had the connect event (every
            # receive on a Trio channel, even of what is there, is a schedule point).
            handshake = stream.handshake
            headers = cast("list[tuple[bytes, bytes]]", stream.scope["headers"])  # the request's own list
            stream.handshake = WebSocketHandshake(headers, handshake.http_version, self)
        with trio.move_on_after(self.server.handshake_timeout):
            await responded.wait()
            self.responded = None  # not kept for the connection's life
            return True
        logger.debug("Connection dropped: no answer to its upgrade within %ss", self.server.handshake_timeout)
        return False

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            if isinstance(event, Updated):
                self.idle = event.idle
            await super().protocol_send(event)
            return
        # The first bytes after an upgrade request: its response's head.
        responding = self.responded if self.responded is not None and not self.responded.is_set() else None
        if responding is not None:
            self._adopt_websocket()
        if not await self._send(event.data):
            await self.protocol.handle(Closed())
        if responding is not None:
            responding.set()

    async def _send(self, data: bytes) -> bool:
        """Write ``data`` under the send lock, whole even if cancelled; ``False`` if the socket is gone."""
        async with self.send_lock:
            try:
                with trio.CancelScope(shield=True):
                    await self.stream.send_all(data)
            except _GONE:
                return False
        return True

    def _adopt_websocket(self) -> None:
        """As the 101 goes out, note the accepted WebSocket, on trioapi's wsproto connection.

        Its handshake made that connection (``WebSocketHandshake``, given to the
        stream before the app could accept); should the app have accepted
        earlier, with hypercorn's, the connection is replaced here, before any
        frame has been read (what followed the request is still held back).
        """
        stream = getattr(self.protocol.protocol, "stream", None)
        if isinstance(stream, WSStream) and stream.state is ASGIWebsocketState.CONNECTED:
            self.websocket = stream
            if not isinstance(stream.connection, LimitedConnection):
                stream.connection = self.websocket_connection(stream.handshake.extensions)[0]

    def websocket_connection(self, offered: list[str] | None) -> tuple[LimitedConnection, bytes | None]:
        """trioapi's wsproto connection for a WebSocket here, and its ``Sec-WebSocket-Extensions``."""
        return server_connection(offered, self.server.max_message_size, pinging=self.server.pinging)

    def _ended(self) -> None:
        if isinstance(self.context, ConnectionContext):
            self.context.ended.set()

    async def _close(self) -> None:
        self._ended()
        if self.closed:  # hypercorn closes twice: once done, and on its way out
            return
        self.closed = True
        failed = False
        if (websocket := self.websocket) is not None:
            # A message cut short stays in hypercorn's buffer until its stream goes, with
            # the reference cycles hypercorn leaves: free it now, as nothing more can come.
            websocket.buffer.clear()
            failed = isinstance(websocket.connection, LimitedConnection) and websocket.connection.failed
        try:
            # TLS has no half-close: its close_notify goes out with aclose() below.
            if isinstance(self.stream, trio.abc.HalfCloseableStream) and await self._lock_for_eof():
                try:
                    with contextlib.suppress(*_GONE):
                        await self.stream.send_eof()
                finally:
                    self.send_lock.release()
            if failed:
                with trio.move_on_after(LINGER):
                    await self._discard_input()
        finally:
            await self.stream.aclose()  # closes the socket even when cancelled

    async def _lock_for_eof(self) -> bool:
        """Take the send lock, after the frame going out if there is one (``False`` if still going)."""
        try:
            self.send_lock.acquire_nowait()
        except trio.WouldBlock:
            with trio.move_on_after(LINGER):  # a peer that reads nothing holds a write forever
                await self.send_lock.acquire()
                return True
            return False
        return True

    async def _discard_input(self) -> None:
        """Read and drop what the peer still sends, until it hangs up (the caller bounds it)."""
        try:
            while await self.stream.receive_some(MAX_RECV):
                pass
        except _GONE:
            pass  # broken, closed, or read by the connection's own reader


class HypercornServer:
    """What every connection of one server shares, and ``serve``, the task for each accepted socket."""

    def __init__(
        self,
        app: ASGIFramework,
        config: Config,
        worker: WorkerContext,
        state: dict[str, Any],
        *,
        max_message_size: int,
        handshake_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.app = TrioAPIWrapper(app)
        #: The server side of TLS, or ``None`` for plain connections.
        self.tls = tls
        self.config = config
        self.worker = worker
        self.state = state
        #: Close 1009 above this many bytes (characters, for text) in a message.
        self.max_message_size = max_message_size
        #: Seconds the app has to answer an upgrade request.
        self.handshake_timeout = handshake_timeout
        self.pinging = config.websocket_ping_interval is not None

    async def serve(self, raw: socket.socket, peer: Address | None, local: Address | None) -> None:
        """Serve one accepted socket with hypercorn's per-connection server; never raises.

        With TLS, hypercorn's server does the handshake (within ``handshake_timeout``)
        and says ``wss``/``https`` in the scope.
        """
        raw.setblocking(False)
        stream: trio.abc.Stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))  # sets TCP_NODELAY
        if self.tls is not None:
            stream = trio.SSLStream(stream, self.tls, server_side=True)
        connection = HypercornConnection(self, stream)
        try:
            await connection.run()
        except Exception as error:
            who = "a Unix socket's client" if peer is None else f"{peer[0]}:{peer[1]}"
            if dropped(error):
                logger.info("Dropped the connection from %s: %s", who, _describe(error))
            else:
                logger.exception("Unexpected error serving the connection from %s", who)
        finally:
            if not connection.closed:  # a failed TLS handshake returns before hypercorn closes
                await trio.aclose_forcefully(stream)


def _describe(error: BaseException) -> str:
    """One line for what ended a connection: the exception's type and message (each, for a group)."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(exc) for exc in error.exceptions)
    return f"{type(error).__name__}: {error}"


def _request_kind(head: bytes) -> tuple[bool, int | None]:
    """Whether an HTTP/1.x request head is a WebSocket upgrade, and the length of its body.

    The length is ``None`` where it is not simply known: a chunked body, an
    invalid length, another protocol (h2c), or a request that is not HTTP/1.x
    (HTTP/2's preface); from there on hypercorn reads on by itself.
    """
    request_line = head.split(b"\r\n", 1)[0]
    if not request_line.endswith((b" HTTP/1.1", b" HTTP/1.0")):
        return False, None
    upgrade = False
    length: int | None = 0
    for name, value in header_lines(head):
        if name == b"upgrade":
            upgrade = value.strip().lower() == b"websocket"
            if not upgrade:
                return False, None
        elif name == b"transfer-encoding":
            length = None
        elif name == b"content-length" and length is not None:
            length = int(value) if value.strip().isdigit() else None
    return upgrade and request_line.startswith(b"GET "), length


#: What ends a connection because of what its client sent or did, rather than a bug:
#: a broken or closed socket, and the protocol errors h11 and wsproto raise for a client's
#: bytes (or for what hypercorn then tries to send in a state they put it in).
_DROPPED = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.BusyResourceError,
    h11.ProtocolError,
    wsproto.utilities.ProtocolError,
)


def dropped(error: BaseException) -> bool:
    """Whether ``error`` ended a connection because of its client (see ``_DROPPED``)."""
    if isinstance(error, BaseExceptionGroup):
        return all(dropped(exc) for exc in error.exceptions)
    return isinstance(error, _DROPPED)
