"""Serving with trio-websocket: every connection is a real ``trio_websocket`` connection.

trioapi's own accept loop (``_listen``) gives each socket a task and a nursery
of its own, where trio-websocket's reader runs (``wrap_server_stream``), rather
than ``trio_websocket.serve_websocket``, which ends the whole server when one
handler raises. Before trio-websocket sees the connection, the request head is
read here (``_http``): bounded in size and time, plain HTTP answered 426, and
the scope built from every header (wsproto drops ``Host`` from the headers it
hands on). Dead peers are found with trio-websocket's own ``ping()``: a
``Heartbeat`` pings each connection every ``ping_interval``, spread over time
so no moment pings them all, and drops a peer whose pong does not come in time.

The same pieces serve a ``WebSocketRequest`` from your own trio-websocket
server: ``handle_trio_websocket(app, request)``.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import attrs
import trio
from trio_websocket import ConnectionClosed, Endpoint, WebSocketRequest, wrap_server_stream
from wsproto.utilities import LocalProtocolError

from trioapi.server._http import ScopeSettings, header_lines, read_request_head, websocket_scope
from trioapi.server._listen import Address, ConnectionHandler, address, serve_own_listeners
from trioapi.transports.trio_websocket import CLOSE_HANDSHAKE_TIMEOUT, TrioWebSocketTransport
from trioapi.websockets import WebSocket

if TYPE_CHECKING:
    from trioapi._types import Scope
    from trioapi.applications import TrioAPI
    from trioapi.server._config import ServerConfig

__all__ = ["handle_trio_websocket", "serve_trio_websocket"]

logger = logging.getLogger("trioapi.trio_websocket")

#: Bytes per read of trio-websocket's reader (its default, 4 KiB, costs 16 KiB messages half their speed).
RECEIVE_BUFFER_SIZE = 64 * 1024

#: Messages trio-websocket's reader holds for a handler that has not asked for them yet.
MESSAGE_QUEUE_SIZE = 4

#: How often the heartbeat looks for connections due a ping, in seconds.
HEARTBEAT_TICK = 0.5


async def serve_trio_websocket(
    app: TrioAPI,
    host: str,
    port: int,
    sock: socket.socket | None,
    config: ServerConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app``'s WebSocket routes with trio-websocket until ``shutdown_trigger`` returns."""

    settings = ScopeSettings.of(config)
    tls = config.ssl_context()

    def handler_for(server: trio.Nursery, state: dict[str, Any]) -> ConnectionHandler:
        heartbeat = None
        if config.ping_interval is not None:
            timeout = config.ping_interval if config.idle_timeout is None else config.idle_timeout
            heartbeat = Heartbeat(config.ping_interval, max(1.0, timeout - config.ping_interval))
            server.start_soon(heartbeat.run)
        return partial(_serve_socket, app, config, state, heartbeat, settings, tls)

    await serve_own_listeners(
        app,
        host,
        port,
        sock,
        config,
        shutdown_trigger,
        name="trio-websocket",
        handler_for=handler_for,
        task_status=task_status,
    )


async def _serve_socket(
    app: TrioAPI,
    config: ServerConfig,
    state: dict[str, Any],
    heartbeat: Heartbeat | None,
    settings: ScopeSettings,
    tls: ssl.SSLContext | None,
    raw: socket.socket,
    peer: Address | None,
    local: Address | None,
) -> None:
    """One accepted socket: its request head, then trio-websocket and the app; never raises."""
    raw.setblocking(False)
    if local is None and peer is not None:  # listening on every address: ask the connection
        local = address(raw.getsockname())
    plain = trio.SocketStream(trio.socket.from_stdlib_socket(raw))  # sets TCP_NODELAY
    # TLS's handshake happens on the first read, within the handshake's time.
    stream: trio.abc.Stream = plain if tls is None else trio.SSLStream(plain, tls, server_side=True)
    try:
        async with trio.open_nursery() as nursery:  # trio-websocket's reader task runs here
            try:
                await _handshake_and_serve(
                    app, config, state, heartbeat, settings, stream, nursery, peer, local
                )
            finally:
                # The conversation is over, or never began: closing the socket ends
                # trio-websocket's reader, unless it waits to hand a message to a handler
                # that has gone; that one is cancelled a moment later.
                plain.socket.close()
                if nursery.child_tasks:
                    nursery.cancel_scope.deadline = trio.current_time() + CLOSE_HANDSHAKE_TIMEOUT
    except Exception as error:
        if _dropped(error):
            logger.debug("Connection dropped: %r", error)
        else:
            logger.exception("Unexpected error in the trio-websocket server")
    finally:
        plain.socket.close()  # (once more, if the nursery never opened)


async def _handshake_and_serve(
    app: TrioAPI,
    config: ServerConfig,
    state: dict[str, Any],
    heartbeat: Heartbeat | None,
    settings: ScopeSettings,
    stream: trio.abc.Stream,
    nursery: trio.Nursery,
    peer: Address | None,
    local: Address | None,
) -> None:
    """Read the request head, hand the connection to trio-websocket, then serve its request."""
    head = request = None
    with trio.move_on_after(config.handshake_timeout) as handshake:
        head = await read_request_head(stream.receive_some, stream.send_all, RECEIVE_BUFFER_SIZE)
        if head is None:
            return  # answered already (426, 431)
        # trio-websocket closes the stream when it refuses the request (wsproto's 400 or
        # 426): then no request will come, so stop waiting for one.
        replayed = _Replayed(stream, head.raw + head.trailing, on_close=handshake.cancel)
        request = await wrap_server_stream(
            cast("trio.Nursery", _ReaderHost(nursery)),
            replayed,
            message_queue_size=MESSAGE_QUEUE_SIZE,
            max_message_size=config.max_message_size,
            receive_buffer_size=RECEIVE_BUFFER_SIZE,
        )
        replayed.on_close = None
    if head is None or request is None:
        logger.debug("Handshake not completed within %ss", config.handshake_timeout)
        return
    subprotocols = list(request.proposed_subprotocols)
    scope = websocket_scope(head.target, header_lines(head.raw), subprotocols, state, peer, local, settings)
    await _serve_request(app, request, scope, heartbeat, stream)


async def _serve_request(
    app: TrioAPI,
    request: WebSocketRequest,
    scope: Scope,
    heartbeat: Heartbeat | None,
    stream: trio.abc.AsyncResource | None,
) -> None:
    transport = TrioWebSocketTransport(request)
    beat = heartbeat.watch(transport, stream) if heartbeat is not None else None
    try:
        await app.handle_websocket(WebSocket(scope, transport=transport))
    finally:
        if beat is not None and heartbeat is not None:
            heartbeat.forget(beat)


async def handle_trio_websocket(app: TrioAPI, request: WebSocketRequest) -> None:
    """Serve one ``trio_websocket.WebSocketRequest`` with ``app``'s WebSocket routes; never raises.

    For a trio-websocket server of your own, with the app's lifespan around it::

        async with trioapi.server.lifespan(app):
            await trio_websocket.serve_websocket(
                partial(handle_trio_websocket, app), "127.0.0.1", 8000, ssl_context=None
            )

    The scope is built from what trio-websocket tells of the request (its
    headers lack ``Host``, which wsproto keeps to itself). Keepalive pings are
    left to your server.
    """
    local, remote = request.local, request.remote
    scope = websocket_scope(
        request.path,
        list(request.headers),
        list(request.proposed_subprotocols),
        {},
        (str(remote.address), remote.port) if isinstance(remote, Endpoint) else None,
        (str(local.address), local.port) if isinstance(local, Endpoint) else None,
    )
    try:
        await _serve_request(app, request, scope, None, None)
    except Exception:
        logger.exception("Unexpected error serving a trio-websocket request")


#: How a connection ends when its client misbehaves or vanishes: a broken stream, a client
#: that left mid-handshake (``ValueError``), or trio-websocket's reader meeting a frame
#: wsproto refuses to answer (a ping while we close: python-trio/trio-websocket#184).
_DROPPED = (OSError, ValueError, trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError)


def _dropped(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_dropped(exc) for exc in error.exceptions)
    return isinstance(error, _DROPPED)


class _ReaderHost:
    """Hosts trio-websocket's reader task in a nursery, without letting its failure cancel the handler.

    trio-websocket's reader fails when a client's ping arrives after our close frame
    (wsproto refuses the pong: python-trio/trio-websocket#184). By then nothing is
    left for the reader to do; in the connection's nursery its exception would cancel
    the handler in the middle of its ``close()``. Here it ends the reader alone.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def start_soon(self, fn: Callable[[], Awaitable[None]], name: object = None) -> None:
        """What ``wrap_server_stream`` calls, once, with the reader."""
        self._nursery.start_soon(_reader_quietly, fn, name=name or fn)


async def _reader_quietly(reader: Callable[[], Awaitable[None]]) -> None:
    try:
        await reader()
    except Exception as error:
        if not _dropped(error):
            raise
        logger.debug("trio-websocket's reader ended: %r", error)


class _Replayed(trio.abc.Stream):
    """A stream that first gives back bytes already read from it (the request head), then reads on.

    Once those bytes are out, ``receive_some`` is the wrapped stream's own method,
    so trio-websocket's reader pays nothing for the wrapper per read.
    """

    def __init__(self, stream: trio.abc.Stream, prefix: bytes, on_close: Callable[[], object]) -> None:
        self._stream = stream
        self._prefix = prefix
        #: Called when trio-websocket closes the stream (``None`` once that no longer matters).
        self.on_close: Callable[[], object] | None = on_close

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        prefix = self._prefix
        if not prefix:
            return await self._stream.receive_some(max_bytes)
        await trio.lowlevel.checkpoint()
        size = len(prefix) if max_bytes is None else max_bytes
        chunk, self._prefix = prefix[:size], prefix[size:]
        if not self._prefix:
            self.receive_some = self._stream.receive_some  # type: ignore[method-assign]
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        if self.on_close is not None:
            self.on_close()
        await self._stream.aclose()


@attrs.define(eq=False)
class _Beat:
    """One watched connection: its transport, the stream to drop if it goes silent, its next ping time."""

    transport: TrioWebSocketTransport
    stream: trio.abc.AsyncResource | None
    due: float


class Heartbeat:
    """trio-websocket's ``ping()`` to every connection every ``interval`` seconds, spread over time.

    Each connection is pinged at its own phase of the interval, so a tick pings
    only the few that are due, each in a short task of its own; a peer that has
    not answered within ``timeout`` has its TCP connection closed, and its
    handler sees ``WebSocketDisconnect(1006)``.
    """

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self._beats: set[_Beat] = set()
        self._tasks: trio.Nursery | None = None

    def watch(self, transport: TrioWebSocketTransport, stream: trio.abc.AsyncResource | None) -> _Beat:
        """Ping ``transport`` from now on (first ping at a random point of the next interval)."""
        beat = _Beat(transport, stream, trio.current_time() + random.uniform(0, self.interval))
        self._beats.add(beat)
        return beat

    def forget(self, beat: _Beat) -> None:
        """Stop pinging a connection that has ended."""
        self._beats.discard(beat)

    async def run(self) -> None:
        """Ping whoever is due every ``HEARTBEAT_TICK``, until cancelled."""
        async with trio.open_nursery() as tasks:
            while True:
                await trio.sleep(HEARTBEAT_TICK)
                now = trio.current_time()
                for beat in list(self._beats):
                    if beat.due <= now:
                        beat.due = now + self.interval
                        tasks.start_soon(self._ping, beat)

    async def _ping(self, beat: _Beat) -> None:
        connection = beat.transport.connection
        if connection is None or connection.closed is not None:
            return
        with trio.move_on_after(self.timeout) as timer:
            try:
                await connection.ping()
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                return
        if timer.cancelled_caught and connection.closed is None and beat.stream is not None:
            logger.info("WebSocket peer did not answer a ping within %ss; dropping it", self.timeout)
            await beat.stream.aclose()
