"""The native transport: trioapi's own accept loop over trio-websocket.

``serve_websocket`` as shipped by trio-websocket lets one handler's exception
take the whole server down; here every connection runs in its own nursery under
``TrioAPI.handle_websocket``, which never lets an error escape. Compared with the
ASGI path there is no per-message dict and no server queue between the socket
and the handler, and the client's real close code reaches the app (hypercorn
always reports 1006).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)
from wsproto.utilities import LocalProtocolError

from trioapi.transports import PeerClosed
from trioapi.websockets import WebSocket

if TYPE_CHECKING:
    from trioapi._types import Scope
    from trioapi.applications import TrioAPI

__all__ = ["Keepalive", "NativeConfig", "NativeTransport", "handle_native_stream"]

logger = logging.getLogger("trioapi.native")

#: Seconds the reader gets to finish a close handshake once the handler is done.
CLOSE_HANDSHAKE_TIMEOUT = 2.0

#: Seconds a closing connection waits for its peer to read our last frames and hang up.
LINGER = 1.0

#: Default seconds a keepalive ping may wait for its pong.
DEFAULT_PING_TIMEOUT = 20.0

#: Longest HTTP request head accepted before the handshake, in bytes.
MAX_REQUEST_HEAD = 16 * 1024


@attrs.frozen
class NativeConfig:
    """Limits of the native transport. Every default is documented in ``docs/guides/deployment.md``."""

    #: Close 1009 when a message is longer than this (characters for text).
    max_message_size: int = 1024 * 1024
    #: Drop a client that has not finished its handshake after this long.
    handshake_timeout: float = 10.0
    #: Seconds between keepalive pings; ``None`` turns keepalive off.
    ping_interval: float | None = 20.0
    #: A peer that does not answer a ping within this long is dropped (dead-peer detection).
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    #: Bytes per socket read; trio-websocket's 4 KiB default costs large messages dearly.
    receive_buffer_size: int = 64 * 1024
    #: Messages trio-websocket buffers between its reader and the handler.
    message_queue_size: int = 4


def _closed(exc: ConnectionClosed) -> PeerClosed:
    reason = exc.reason
    if reason is None:
        return PeerClosed(1006, "")
    return PeerClosed(reason.code, reason.reason or "")


class NativeTransport:
    """A ``WebSocketTransport`` over a trio-websocket ``WebSocketRequest``/``WebSocketConnection``."""

    __slots__ = ("_connection", "_request", "can_deny")

    def __init__(self, request: WebSocketRequest) -> None:
        self._request = request
        self._connection: WebSocketConnection | None = None
        self.can_deny = True

    async def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the 101 response."""
        self._connection = await self._request.accept(subprotocol=subprotocol, extra_headers=headers)

    async def receive(self) -> str | bytes:
        """The next message from trio-websocket's reader."""
        assert self._connection is not None
        try:
            return await self._connection.get_message()
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def send(self, message: str | bytes) -> None:
        """Send one message."""
        assert self._connection is not None
        try:
            await self._connection.send_message(message)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def close(self, code: int, reason: str) -> None:
        """Close (or, before accept, refuse with 403 as hypercorn does)."""
        if self._connection is None:
            await self._request.reject(403)
        else:
            await self._connection.aclose(code, reason or None)

    async def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Refuse the handshake with an HTTP response (trio-websocket adds Content-Length)."""
        extra = [(name, value) for name, value in headers if name.lower() != b"content-length"]
        await self._request.reject(status, extra_headers=extra, body=body or None)

    @property
    def connection(self) -> WebSocketConnection | None:
        """The trio-websocket connection once accepted (for keepalive pings)."""
        return self._connection


_UPGRADE_BODY = b"This server only speaks WebSocket (RFC 6455)\n"
_UPGRADE_REQUIRED = (
    b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_UPGRADE_BODY)).encode() + b"\r\n\r\n" + _UPGRADE_BODY
)


async def _peek_request_head(stream: trio.SocketStream) -> bytes:
    """The HTTP request head, looked at without consuming it.

    trio-websocket then reads the plain socket itself, with nothing wrapped
    around it on the per-message path. Peeking returns what the kernel holds so
    far; until the head is complete (almost always at once), look again after a
    short pause. The caller bounds the whole wait with the handshake timeout.
    """
    pause = 0.001
    while True:
        head = await stream.socket.recv(MAX_REQUEST_HEAD + 1, socket.MSG_PEEK)
        if not head:
            raise ValueError("connection closed before the request head ended")
        if b"\r\n\r\n" in head:
            return head
        if len(head) > MAX_REQUEST_HEAD:
            raise ValueError("request head too large")
        await trio.sleep(pause)
        pause = min(pause * 2, 0.05)


def _is_upgrade(head: bytes) -> bool:
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    for line in lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def _scope_for(request: WebSocketRequest, state: dict[str, Any]) -> Scope:
    target = request.path
    path, _, query = target.partition("?")
    local, remote = request.local, request.remote
    is_ssl = isinstance(local, Endpoint) and local.is_ssl
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "wss" if is_ssl else "ws",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": list(request.headers),
        "subprotocols": list(request.proposed_subprotocols),
        "state": dict(state),
        "extensions": {"websocket.http.response": {}},
    }
    if isinstance(remote, Endpoint):
        scope["client"] = (str(remote.address), remote.port)
    if isinstance(local, Endpoint):
        scope["server"] = (str(local.address), local.port)
    return scope


class Keepalive:
    """Dead-peer detection for every connection of one server, from one task.

    Every ``ping_interval`` it pings each open connection (in a short-lived task
    each); a peer that has not answered within ``ping_timeout`` has its TCP
    stream aborted, so its handler sees ``WebSocketDisconnect(1006)`` like for
    any broken connection. One task for the server rather than one sleeping
    task per connection keeps idle connections small.
    """

    def __init__(self, config: NativeConfig) -> None:
        self._config = config
        self._streams: dict[NativeTransport, trio.abc.Stream] = {}

    def watch(self, transport: NativeTransport, stream: trio.abc.Stream) -> None:
        """Start pinging ``transport`` (once accepted) until ``forget``."""
        self._streams[transport] = stream

    def forget(self, transport: NativeTransport) -> None:
        """Stop pinging ``transport``: its connection has ended."""
        self._streams.pop(transport, None)

    async def run(self) -> None:
        """Ping every watched connection each ``ping_interval``; runs until cancelled."""
        interval = self._config.ping_interval
        if interval is None:
            return
        async with trio.open_nursery() as pings:
            while True:
                await trio.sleep(interval)
                for transport, stream in list(self._streams.items()):
                    pings.start_soon(self._ping, transport, stream)

    async def _ping(self, transport: NativeTransport, stream: trio.abc.Stream) -> None:
        connection = transport.connection
        if connection is None or connection.closed is not None:
            return
        try:
            with trio.fail_after(self._config.ping_timeout):
                await connection.ping()
        except trio.TooSlowError:
            logger.info(
                "WebSocket peer did not answer a ping within %ss; dropping it", self._config.ping_timeout
            )
            await trio.aclose_forcefully(stream)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def handle_native_stream(
    app: TrioAPI, config: NativeConfig, state: dict[str, Any], keepalive: Keepalive, stream: trio.SocketStream
) -> None:
    """Serve one TCP connection: handshake, then the app's handler; never raises.

    Its frame stays alive as long as the connection does, so it is kept to one
    (the handshake runs in a helper that has returned by then).
    """
    try:
        async with trio.open_nursery() as nursery:  # trio-websocket's reader task lives here
            request = await _handshake(nursery, stream, config)
            if request is not None:
                transport = NativeTransport(request)
                keepalive.watch(transport, stream)
                try:
                    await app.handle_websocket(WebSocket(_scope_for(request, state), transport=transport))
                finally:
                    keepalive.forget(transport)
            if request is not None and transport.connection is not None:
                # The reader may still be completing a close handshake that another
                # task started (a shutdown's goodbye): let it, within a bound.
                nursery.cancel_scope.deadline = trio.current_time() + CLOSE_HANDSHAKE_TIMEOUT
            else:
                nursery.cancel_scope.cancel()
    except* (ValueError, trio.BrokenResourceError, trio.ClosedResourceError) as dropped:
        logger.debug("Connection dropped: %s", dropped.exceptions[0])
    except* LocalProtocolError as late:
        # trio-websocket's reader answering a ping that came after our close
        # frame (trio-websocket#184): the connection is over either way.
        logger.debug("Protocol error while closing: %s", late.exceptions[0])
    except* Exception:
        logger.exception("Unexpected error in the native transport")
    finally:
        with trio.CancelScope(shield=True):
            await _linger_close(stream)


async def _linger_close(stream: trio.SocketStream) -> None:
    """Close the socket only once the peer has read what we sent, within ``LINGER`` seconds.

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy our last frames in flight: a 1009 close, say, to a client still
    sending the oversized message. So: end our side, discard what the peer
    still sends until it closes too (or time runs out), then close.
    """
    with trio.move_on_after(LINGER):
        try:
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass
    await trio.aclose_forcefully(stream)


async def _handshake(
    nursery: trio.Nursery, stream: trio.SocketStream, config: NativeConfig
) -> WebSocketRequest | None:
    """The upgrade request, read within the handshake timeout; plain HTTP gets 426 and ``None``."""
    with trio.move_on_after(config.handshake_timeout):
        head = await _peek_request_head(stream)
        if not _is_upgrade(head):
            # Consume the request first: closing with unread data would send a
            # reset that can destroy the response on its way.
            await stream.receive_some(len(head))
            await stream.send_all(_UPGRADE_REQUIRED)
            return None
        return await wrap_server_stream(
            nursery,
            stream,
            message_queue_size=config.message_queue_size,
            max_message_size=config.max_message_size,
            receive_buffer_size=config.receive_buffer_size,
        )
    logger.debug("Handshake not completed within %ss", config.handshake_timeout)
    return None
