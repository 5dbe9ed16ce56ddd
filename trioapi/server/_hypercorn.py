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
from typing import TYPE_CHECKING, Any

import trio

from trioapi.server._listen import ConnectionHandler, serve_own_listeners
from trioapi.server._proxy import ProxyHeadersApp, TrustedProxies

if TYPE_CHECKING:
    from hypercorn.config import Config

    from trioapi.applications import TrioAPI
    from trioapi.server._config import ServerConfig

__all__ = ["hypercorn_config", "serve_hypercorn"]


def hypercorn_config(config: ServerConfig) -> Config:
    """A ``hypercorn.config.Config`` carrying ``config``'s limits."""
    from hypercorn.config import Config

    hc = Config()
    hc.websocket_max_message_size = config.max_message_size
    hc.websocket_ping_interval = config.ping_interval
    if config.ping_interval is not None and config.idle_timeout is not None:
        hc.read_timeout = math.ceil(config.idle_timeout)
    hc.graceful_timeout = config.graceful_timeout
    hc.ssl_handshake_timeout = config.handshake_timeout
    hc.root_path = config.root_path
    hc.accesslog = None  # trioapi's access log has a line per request and per WebSocket
    # hypercorn's lines go through the process's logging (one format for all, see
    # trioapi.server._logging).
    hc.errorlog = logging.getLogger("hypercorn.error")
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

    from trioapi.server._hypercorn_connection import HypercornServer

    hc = hypercorn_config(config)
    worker = WorkerContext(None)

    async def trigger() -> None:
        await shutdown_trigger()  # every WebSocket has had its goodbye
        await worker.terminated.set()  # keep-alive connections close once idle

    def handler_for(server: trio.Nursery, state: dict[str, Any]) -> ConnectionHandler:
        served: Any = app
        if config.proxy_headers:
            served = ProxyHeadersApp(app, TrustedProxies.parse(config.forwarded_allow_ips))
        return HypercornServer(
            served,
            hc,
            worker,
            state,
            max_message_size=config.max_message_size,
            handshake_timeout=config.handshake_timeout,
            tls=config.ssl_context(),
        ).serve

    await serve_own_listeners(
        app,
        host,
        port,
        sock,
        config,
        trigger,
        name="hypercorn",
        scheme="http" if config.certfile is None else "https",
        handler_for=handler_for,
        task_status=task_status,
    )
