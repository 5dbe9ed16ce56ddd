"""Serving with trioapi's native transport: its accept loop, the handshake, and each connection's end."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import trio
from wsproto.connection import SERVER
from wsproto.events import RejectConnection, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from trioapi._lifespan import LifespanDriver
from trioapi.transports.native import (
    CLOSE_HANDSHAKE_TIMEOUT,
    DEFAULT_PING_TIMEOUT,
    STREAM_OPTIONS,
    Address,
    NativeConfig,
    NativeTransport,
    Supervisor,
    close_socket,
    header_lines,
    recv,
    send_plain,
)
from trioapi.websockets import WebSocket

if TYPE_CHECKING:
    from trioapi.applications import TrioAPI
    from trioapi.server._config import ServerConfig

__all__ = ["accept_loop", "bind", "handle_native_stream", "read_request", "serve_native"]

logger = logging.getLogger("trioapi.native")

#: Longest HTTP request head accepted before the handshake, in bytes.
MAX_REQUEST_HEAD = 16 * 1024

#: Seconds a closing connection waits for its peer to read our last frames and hang up.
LINGER = 1.0


async def serve_native(
    app: TrioAPI,
    host: str,
    port: int,
    sock: socket.socket | None,
    config: ServerConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[int],
) -> None:
    native = NativeConfig(
        max_message_size=config.max_message_size,
        handshake_timeout=config.handshake_timeout,
        ping_interval=config.ping_interval,
        ping_timeout=_ping_deadline(config),
        compression=config.compression,
    )
    lifespan = LifespanDriver(app)
    async with trio.open_nursery() as app_nursery:
        await lifespan.startup(app_nursery)
        listeners = [sock] if sock is not None else await bind(host, port)
        bound = listeners[0].getsockname()[1]
        logger.info("trioapi (native) serving on ws://%s:%s", host, bound)
        try:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as server:
                    supervisor = Supervisor(native)
                    server.start_soon(supervisor.run)
                    handler = partial(handle_native_stream, app, native, lifespan.state, supervisor)
                    for listener in listeners:
                        server.start_soon(accept_loop, listener, handler, connections)
                    task_status.started(bound)
                    await shutdown_trigger()
                    server.cancel_scope.cancel()
                # Connections were told goodbye by the trigger; anything left is cut.
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        finally:
            if sock is None:  # ours to close; a socket passed in stays its owner's
                for listener in listeners:
                    trio.lowlevel.notify_closing(listener)
                    listener.close()
        await lifespan.shutdown()
        app_nursery.cancel_scope.cancel()


async def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host:port``, as plain sockets the accept loop can use without a wrapper."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    return [socket.socket(fileno=listener.socket.detach()) for listener in listeners]


#: accept() errors that say the process or system is out of something: wait, then go on.
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
#: accept() errors about one connection that died before it was accepted: skip it.
_DIED_IN_QUEUE = {errno.ECONNABORTED, errno.EPERM, errno.EPROTO}


#: What a listener bound to every address of its family reports as its host.
_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})


async def accept_loop(
    listener: socket.socket,
    handler: Callable[[socket.socket, Address, Address | None], Awaitable[None]],
    connections: trio.Nursery,
) -> None:
    """Accept connections on ``listener`` and start ``handler`` for each, until cancelled.

    ``handler(conn, peer, local)`` gets the peer's (host, port) and the local one, or
    ``None`` for the local one when the listener listens on every address.

    On plain sockets rather than ``trio.SocketListener``: the native transport
    keeps each connection's plain socket, to read and write it without trio's
    socket layers and to write a frame at once when it can
    (``NativeTransport.write_now``).
    """
    listener.setblocking(False)
    # The peer's address comes with each accept(); the local one is the listener's unless it
    # listens on every address, where only the connection's own socket can tell.
    host, port = listener.getsockname()[:2]
    local: Address | None = None if host in _ANY_ADDRESS else (host, port)
    while True:
        try:
            conn, peer = listener.accept()
        except BlockingIOError:
            await trio.lowlevel.wait_readable(listener)
            continue
        except OSError as exc:
            if exc.errno in _DIED_IN_QUEUE:
                continue
            if exc.errno in _OUT_OF_RESOURCES:
                logger.error("accept() failed (%s); trying again in 0.1 s", exc)
                await trio.sleep(0.1)
                continue
            raise
        connections.start_soon(handler, conn, peer[:2], local)
        await trio.lowlevel.checkpoint()


def _ping_deadline(config: ServerConfig) -> float:
    """How long a native ping may wait for its pong, so a dead peer goes within ``idle_timeout``."""
    if config.ping_interval is None or config.idle_timeout is None:
        return DEFAULT_PING_TIMEOUT
    return max(1.0, config.idle_timeout - config.ping_interval)


_UPGRADE_BODY = b"This server only speaks WebSocket (RFC 6455)\n"


def _plain_response(status: int, phrase: str, body: bytes, headers: tuple[str, ...] = ()) -> bytes:
    """An HTTP/1.1 response that closes the connection, for requests that never become WebSockets."""
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        *headers,
        "Connection: close",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


_UPGRADE_REQUIRED = _plain_response(426, "Upgrade Required", _UPGRADE_BODY, ("Upgrade: websocket",))
_HEAD_TOO_LARGE = _plain_response(431, "Request Header Fields Too Large", b"Request head too large\n")


def _is_upgrade(head: bytes) -> bool:
    return any(name == b"upgrade" and b"websocket" in value.lower() for name, value in header_lines(head))


async def read_request(raw: socket.socket, config: NativeConfig) -> NativeTransport | None:
    """Read the upgrade request; answer anything else (plain HTTP, bad requests) and return ``None``."""
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_REQUEST_HEAD:
            await send_plain(raw, _HEAD_TOO_LARGE)
            return None
        chunk = await recv(raw, config.receive_buffer_size)
        if not chunk:
            raise ValueError("connection closed before the request head ended")
        buffer += chunk
    if end > MAX_REQUEST_HEAD:
        await send_plain(raw, _HEAD_TOO_LARGE)
        return None
    head, trailing = buffer[: end + 4], buffer[end + 4 :]
    if not _is_upgrade(head):
        await send_plain(raw, _UPGRADE_REQUIRED)
        return None
    handshake = H11Handshake(SERVER)
    try:
        handshake.receive_data(head)
        event = next(iter(handshake.events()), None)
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        extra = tuple(f"{k.decode()}: {v.decode()}" for k, v in getattr(hint, "headers", ()))
        await send_plain(raw, _plain_response(status, HTTPStatus(status).phrase, f"{exc}\n".encode(), extra))
        return None
    if not isinstance(event, Request):
        await send_plain(raw, _plain_response(400, "Bad Request", b"Not a WebSocket handshake\n"))
        return None
    return NativeTransport(raw, handshake, event, head[:-4], trailing, config)


async def handle_native_stream(
    app: TrioAPI,
    config: NativeConfig,
    state: dict[str, Any],
    supervisor: Supervisor,
    raw: socket.socket,
    peer: Address | None = None,
    local: Address | None = None,
) -> None:
    """Serve one accepted TCP connection: handshake, then the app's handler; never raises.

    ``peer`` and ``local``, the connection's two addresses when the accept loop
    knows them, save asking the socket (the scope's ``client`` and ``server``).

    Its frame stays alive as long as the connection does, so it is kept to one
    (the handshake runs in a helper that has returned by then).
    """
    raw.setblocking(False)
    for level, option, value in STREAM_OPTIONS:
        with contextlib.suppress(OSError):
            raw.setsockopt(level, option, value)
    try:
        transport = None
        with trio.move_on_after(config.handshake_timeout) as handshake:
            transport = await read_request(raw, config)
        if handshake.cancelled_caught:
            logger.debug("Handshake not completed within %ss", config.handshake_timeout)
        if transport is not None:
            supervisor.watch(transport)
            try:
                await app.handle_websocket(
                    WebSocket(transport.scope(state, peer, local), transport=transport)
                )
            finally:
                supervisor.forget(transport)
            # Our close frame is out (or the peer's came in): let the peer answer, within a bound.
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                await transport.finish()
    except (ValueError, OSError, trio.ClosedResourceError) as dropped:
        logger.debug("Connection dropped: %s", dropped)
    except Exception:
        logger.exception("Unexpected error in the native transport")
    finally:
        with trio.CancelScope(shield=True):
            await linger_close(raw)


async def linger_close(raw: socket.socket) -> None:
    """Close the socket only once the peer has read what we sent, within ``LINGER`` seconds.

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy our last frames in flight: a 1009 close, say, to a client still
    sending the oversized message. So: end our side, discard what the peer
    still sends until it closes too (or time runs out), then close. The socket
    may be closed already (``NativeTransport.abort``).
    """
    with trio.move_on_after(LINGER):
        try:
            raw.shutdown(socket.SHUT_WR)
            while await recv(raw, 65536):
                pass
        except (OSError, trio.BusyResourceError):
            pass  # broken or closed already; or a reader of ours is still waiting on it
    close_socket(raw)
