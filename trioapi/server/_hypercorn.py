"""Serving with hypercorn: HTTP routes and WebSockets, through ASGI, in trioapi's own accept loop.

Each accepted socket is served by hypercorn's per-connection server (its
``TCPServer``, as ``HypercornConnection`` adapts it), in a task of its own
started by the accept loop the native and trio-websocket servers share
(``_listen``), rather than by ``hypercorn.trio.serve``: there, every
connection task shares one nursery with the listeners, so an exception in any
one connection (hypercorn 0.18 has several a client can provoke) ended the
whole server and every connection on it. Here it ends that connection only;
it is logged once, without a traceback when the client caused it.

The lifespan is trioapi's ``LifespanDriver``, as on the other servers, and
shutdown the same: every WebSocket gets 1001 first, then idle keep-alive
connections close (hypercorn's ``terminated`` event) and what is still
running gets ``graceful_timeout`` seconds.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from trioapi.server._listen import Address, ConnectionHandler, serve_own_listeners

if TYPE_CHECKING:
    from hypercorn.config import Config
    from hypercorn.trio.worker_context import WorkerContext

    from trioapi.applications import TrioAPI
    from trioapi.server._config import ServerConfig
    from trioapi.server._hypercorn_connection import ConnectionSettings

__all__ = ["hypercorn_config", "serve_hypercorn"]

logger = logging.getLogger("trioapi.hypercorn")


def hypercorn_config(config: ServerConfig) -> Config:
    """A ``hypercorn.config.Config`` carrying ``config``'s limits."""
    from hypercorn.config import Config

    hc = Config()
    hc.websocket_max_message_size = config.max_message_size
    hc.websocket_ping_interval = config.ping_interval
    if config.ping_interval is not None and config.idle_timeout is not None:
        hc.read_timeout = math.ceil(config.idle_timeout)
    hc.graceful_timeout = config.graceful_timeout
    hc.accesslog = None
    return hc


async def serve_hypercorn(
    app: TrioAPI,
    host: str,
    port: int,
    sock: socket.socket | None,
    config: ServerConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's per-connection server until ``shutdown_trigger`` returns."""
    from hypercorn.trio.worker_context import WorkerContext

    from trioapi.server._hypercorn_connection import ConnectionSettings, TrioAPIWrapper

    hc = hypercorn_config(config)
    worker = WorkerContext(None)
    settings = ConnectionSettings(config.max_message_size, config.handshake_timeout)

    async def trigger() -> None:
        await shutdown_trigger()  # every WebSocket has had its goodbye
        await worker.terminated.set()  # keep-alive connections close once idle

    def handler_for(server: trio.Nursery, state: dict[str, Any]) -> ConnectionHandler:
        return partial(_serve_socket, TrioAPIWrapper(app), hc, worker, state, settings)  # type: ignore[arg-type]

    await serve_own_listeners(
        app,
        host,
        port,
        sock,
        config,
        trigger,
        name="hypercorn",
        scheme="http",
        handler_for=handler_for,
        task_status=task_status,
    )


async def _serve_socket(
    app: Any,
    hc: Config,
    worker: WorkerContext,
    state: dict[str, Any],
    settings: ConnectionSettings,
    raw: socket.socket,
    peer: Address,
    local: Address | None,
) -> None:
    """One accepted socket, served by hypercorn's per-connection server; never raises."""
    from trioapi.server._hypercorn_connection import ConnectionContext, HypercornConnection, dropped

    raw.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))  # sets TCP_NODELAY
    # A context of its own only where hypercorn sleeps through it: its keepalive pings.
    context = ConnectionContext(worker) if hc.websocket_ping_interval is not None else worker
    try:
        await HypercornConnection(app, hc, context, state, stream, settings).run()
    except Exception as error:
        if dropped(error):
            logger.info("Dropped the connection from %s:%s: %s", *peer, _describe(error))
        else:
            logger.exception("Unexpected error serving the connection from %s:%s", *peer)


def _describe(error: BaseException) -> str:
    """One line for what ended a connection: the exception's type and message (each, for a group)."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(exc) for exc in error.exceptions)
    return f"{type(error).__name__}: {error}"
