"""Serving with trioapi's native transport: its accept loop, the handshake, and each connection's end."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import trio
from wsproto.connection import SERVER
from wsproto.events import RejectConnection, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from trioapi.server._http import (
    RequestHead,
    ScopeSettings,
    header_lines,
    plain_response,
    read_request_head,
    websocket_scope,
)
from trioapi.server._listen import Address, ConnectionHandler, address, serve_own_listeners
from trioapi.transports.native import (
    DEFAULT_PING_TIMEOUT,
    STREAM_OPTIONS,
    NativeConfig,
    NativeTransport,
    Supervisor,
    close_socket,
    recv,
    send_plain,
    tls_handshake,
)
from trioapi.websockets import WebSocket

if TYPE_CHECKING:
    from trioapi.applications import TrioAPI
    from trioapi.server._config import ServerConfig

__all__ = ["handle_native_stream", "read_request", "serve_native"]

logger = logging.getLogger("trioapi.native")

#: Seconds a closing connection waits for its peer to read our last frames and hang up.
LINGER = 1.0


async def serve_native(
    app: TrioAPI,
    host: str,
    port: int,
    sock: socket.socket | None,
    config: ServerConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with the native transport until ``shutdown_trigger`` returns."""
    native = NativeConfig(
        max_message_size=config.max_message_size,
        handshake_timeout=config.handshake_timeout,
        ping_interval=config.ping_interval,
        ping_timeout=_ping_deadline(config),
        compression=config.compression,
    )
    settings = ScopeSettings.of(config)
    tls = config.ssl_context()

    def handler_for(server: trio.Nursery, state: dict[str, Any]) -> ConnectionHandler:
        supervisor = Supervisor(native)
        server.start_soon(supervisor.run)
        return partial(handle_native_stream, app, native, state, supervisor, settings, tls)

    await serve_own_listeners(
        app,
        host,
        port,
        sock,
        config,
        shutdown_trigger,
        name="native",
        handler_for=handler_for,
        task_status=task_status,
    )


def _ping_deadline(config: ServerConfig) -> float:
    """How long a native ping may wait for its pong, so a dead peer goes within ``idle_timeout``."""
    if config.ping_interval is None or config.idle_timeout is None:
        return DEFAULT_PING_TIMEOUT
    return max(1.0, config.idle_timeout - config.ping_interval)


async def read_request(
    raw: socket.socket, config: NativeConfig
) -> tuple[NativeTransport, RequestHead, Request] | None:
    """Read the upgrade request; answer anything else (plain HTTP, bad requests) and return ``None``."""
    head = await read_request_head(partial(recv, raw), partial(send_plain, raw), config.receive_buffer_size)
    if head is None:
        return None
    handshake = H11Handshake(SERVER)
    try:
        handshake.receive_data(head.raw)
        event = next(iter(handshake.events()), None)
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        extra = tuple(f"{k.decode()}: {v.decode()}" for k, v in getattr(hint, "headers", ()))
        await send_plain(raw, plain_response(status, HTTPStatus(status).phrase, f"{exc}\n".encode(), extra))
        return None
    if not isinstance(event, Request):
        await send_plain(raw, plain_response(400, "Bad Request", b"Not a WebSocket handshake\n"))
        return None
    return NativeTransport(raw, handshake, event, head.trailing, config), head, event


async def _handshakes(
    raw: socket.socket, tls: ssl.SSLContext | None, config: NativeConfig
) -> tuple[socket.socket, tuple[NativeTransport, RequestHead, Request] | None]:
    """TLS's handshake (with ``tls``), then the HTTP upgrade's, within ``handshake_timeout``."""
    request = None
    with trio.move_on_after(config.handshake_timeout):
        if tls is not None:
            raw = wrapped = tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            await tls_handshake(wrapped)
        request = await read_request(raw, config)
    if request is None:
        logger.debug("Handshake not completed within %ss, or refused", config.handshake_timeout)
    return raw, request


async def handle_native_stream(
    app: TrioAPI,
    config: NativeConfig,
    state: dict[str, Any],
    supervisor: Supervisor,
    settings: ScopeSettings,
    tls: ssl.SSLContext | None,
    raw: socket.socket,
    peer: Address | None = None,
    local: Address | None = None,
) -> None:
    """Serve one accepted TCP connection: handshakes, then the app's handler; never raises.

    ``peer`` and ``local``, the connection's two addresses when the accept loop
    knows them, save asking the socket (the scope's ``client`` and ``server``).

    Its frame stays alive as long as the connection does, so it is kept to one
    (the handshakes run in a helper that has returned by then).
    """
    raw.setblocking(False)
    for level, option, value in STREAM_OPTIONS:
        with contextlib.suppress(OSError):
            raw.setsockopt(level, option, value)
    try:
        raw, request = await _handshakes(raw, tls, config)
        if request is not None:
            transport, head, event = request
            if local is None:
                local = address(raw.getsockname())
            scope = websocket_scope(
                head.target, header_lines(head.raw), list(event.subprotocols), state, peer, local, settings
            )
            del request, head, event  # the scope has what they held: not kept while the handler runs
            supervisor.watch(transport)
            try:
                await app.handle_websocket(WebSocket(scope, transport=transport))
            finally:
                supervisor.forget(transport)
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
