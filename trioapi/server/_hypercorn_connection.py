"""One connection served by hypercorn's per-connection server, as trioapi runs it.

``HypercornConnection`` is hypercorn's own ``TCPServer`` (HTTP/1.1, h2c, and
WebSockets through its ``WSStream`` and ASGI), with its socket I/O taken over
where hypercorn 0.18 lets one client end the process or hold memory without
bound:

- **The request head is read first, whole** (bounded in size and time). An
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
  (``_wsproto.server_connection``): bounded inflation, the message limit
  enforced before hypercorn buffers past it, and protocol errors answered
  with their close code. A connection failed that way is closed gently: our
  close frame out, our side shut, what the client still sends read and
  dropped for at most ``LINGER`` seconds (closing a socket with unread input
  makes the kernel reset it, and the reset can destroy the close frame).
- **A connection's keepalive task ends with the connection**: hypercorn's
  ping task sleeps ``websocket_ping_interval`` between pings and kept the
  whole connection's state alive that long after its socket had closed (some
  18 KB per connection, 20 s long: under churn, hundreds of MB).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING, Final

import attrs
import h11
import trio
import wsproto.utilities
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext

from trioapi.server._http import MAX_REQUEST_HEAD, is_upgrade, plain_response
from trioapi.server._wsproto import LimitedConnection, server_connection
from trioapi.transports.native import header_lines

if TYPE_CHECKING:
    from hypercorn.config import Config
    from hypercorn.typing import AppWrapper, LifespanState

__all__ = ["LINGER", "ConnectionContext", "ConnectionSettings", "HypercornConnection", "dropped"]

logger = logging.getLogger("trioapi.hypercorn")

#: Seconds a failed WebSocket connection waits for its peer to read our close frame and hang up.
LINGER: Final = 1.0

#: What a write or read raises when the socket is gone, or (``Busy``) in use by another task.
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)

BODY_NOT_ALLOWED: Final = plain_response(400, "Bad Request", b"A WebSocket upgrade request has no body\n")


@attrs.frozen
class ConnectionSettings:
    """What every connection of one server is served with, beyond hypercorn's ``Config``."""

    #: Close 1009 above this many bytes (characters, for text) in a message.
    max_message_size: int
    #: Seconds a client has to send its first request head, and the app to answer an upgrade.
    handshake_timeout: float


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


class HypercornConnection(TCPServer):
    """hypercorn's per-connection server, with trioapi's socket I/O (see the module docstring)."""

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        stream: trio.SocketStream,
        settings: ConnectionSettings,
    ) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]
        self.settings = settings
        #: For an upgrade request: set once its response has gone out.
        self.responded: trio.Event | None = None
        #: hypercorn's stream for the accepted WebSocket, once there is one.
        self.websocket: WSStream | None = None

    async def _read_data(self) -> None:
        first = await self._first_request()
        if first is not None:
            if first:
                await self.protocol.handle(RawData(first))
            while (data := await self._receive()) is not None:
                await self.protocol.handle(RawData(data))
                if not data:
                    break
        await self.protocol.handle(Closed())
        # The client is gone (or will be, once answered): nothing is left for the keep-alive
        # timer to close, nor for keepalive pings to keep alive, and either would hold the
        # connection's task, its state and its socket for as long as it sleeps.
        await self.idle_task.stop()
        self._ended()

    async def _receive(self) -> bytes | None:
        """The next bytes from the client; ``b""`` at its end, ``None`` if the socket broke or went silent."""
        try:
            with trio.fail_after(self.config.read_timeout or math.inf):
                return bytes(await self.stream.receive_some(MAX_RECV))
        except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
            return None

    async def _first_request(self) -> bytes | None:
        """Read the first request's head; feed hypercorn an upgrade's head, and answer what needs it.

        Returns the bytes for hypercorn next (after an upgrade's response has
        gone out, those that followed its request), or ``None`` to end the
        connection.
        """
        buffer = b""
        with trio.move_on_after(self.settings.handshake_timeout):
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                if len(buffer) > MAX_REQUEST_HEAD:
                    return buffer  # hypercorn answers it (431)
                chunk = await self._receive()
                if not chunk:
                    return None  # gone before its request ended
                buffer += chunk
            head, rest = buffer[: end + 4], buffer[end + 4 :]
            if not (head.startswith(b"GET ") and is_upgrade(head)):
                return buffer  # plain HTTP: hypercorn serves it from here
            if _declares_body(head):
                await self._send(BODY_NOT_ALLOWED)
                return None
            self.responded = trio.Event()
            await self.protocol.handle(RawData(head))
            await self.responded.wait()
            return rest
        logger.debug(
            "Connection dropped: no request head, or no answer to it, within %ss",
            self.settings.handshake_timeout,
        )
        return None

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        responding = self.responded is not None and not self.responded.is_set()
        if responding:
            self._adopt_websocket()
        if not await self._send(event.data):
            await self.protocol.handle(Closed())
        if responding and self.responded is not None:
            self.responded.set()

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
        """As the 101 goes out, give the accepted WebSocket trioapi's wsproto connection."""
        stream = getattr(self.protocol.protocol, "stream", None)
        if isinstance(stream, WSStream) and stream.state is ASGIWebsocketState.CONNECTED:
            stream.connection = server_connection(stream.handshake.extensions, self.settings.max_message_size)
            self.websocket = stream

    def _ended(self) -> None:
        if isinstance(self.context, ConnectionContext):
            self.context.ended.set()

    async def _close(self) -> None:
        self._ended()
        failed = False
        if (websocket := self.websocket) is not None:
            # A message cut short stays in hypercorn's buffer until its stream goes, with
            # the reference cycles hypercorn leaves: free it now, as nothing more can come.
            websocket.buffer.clear()
            failed = isinstance(websocket.connection, LimitedConnection) and websocket.connection.failed
        with trio.CancelScope(shield=True):
            with trio.move_on_after(LINGER):
                async with self.send_lock:  # a frame going out finishes first
                    with contextlib.suppress(*_GONE):
                        await self.stream.send_eof()
                if failed:
                    await self._discard_input()
            await self.stream.aclose()

    async def _discard_input(self) -> None:
        """Read and drop what the peer still sends, until it hangs up (the caller bounds it)."""
        try:
            while await self.stream.receive_some(MAX_RECV):
                pass
        except _GONE:
            pass  # broken, closed, or read by the connection's own reader


def _declares_body(head: bytes) -> bool:
    """Whether a request head announces a body (``Transfer-Encoding``, or ``Content-Length`` other than 0)."""
    for name, value in header_lines(head):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


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
