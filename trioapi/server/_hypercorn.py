"""Serving with hypercorn's trio worker: HTTP routes and WebSockets, through ASGI."""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from trioapi.applications import TrioAPI
    from trioapi.server._config import ServerConfig

__all__ = ["hypercorn_config", "serve_hypercorn"]

#: Seconds left, after every WebSocket said goodbye, for HTTP requests still in flight.
RESIDUAL_GRACE = 0.5


def hypercorn_config(host: str, port: int, sock: socket.socket | None, config: ServerConfig) -> object:
    """A ``hypercorn.config.Config`` carrying ``config``'s limits."""
    from hypercorn.config import Config

    hc = Config()
    if sock is not None:
        hc.bind = [f"fd://{sock.fileno()}"]
    else:
        hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.websocket_max_message_size = config.max_message_size
    hc.websocket_ping_interval = config.ping_interval
    if config.ping_interval is not None and config.idle_timeout is not None:
        hc.read_timeout = math.ceil(config.idle_timeout)
    hc.graceful_timeout = config.graceful_timeout
    hc.accesslog = None  # trioapi's access log has a line per request and per WebSocket
    # hypercorn's lines go through the process's logging (one format for all, see
    # trioapi.server._logging), without its "Running on" banner: trioapi run says where.
    error_log = logging.getLogger("hypercorn.error")
    if not any(isinstance(f, _NoBanner) for f in error_log.filters):
        error_log.addFilter(_NoBanner())
    hc.errorlog = error_log
    return hc


class _NoBanner(logging.Filter):
    """Drops hypercorn's ``Running on ...`` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Running on ")


async def serve_hypercorn(
    app: TrioAPI,
    host: str,
    port: int,
    sock: socket.socket | None,
    config: ServerConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[int],
) -> None:
    from hypercorn.trio import serve as hypercorn_serve

    hc: Any = hypercorn_config(host, port, sock, config)

    async def trigger() -> None:
        await shutdown_trigger()
        # The WebSockets have had their grace and are gone. Hypercorn reads this
        # value only now, and would otherwise wait it out for idle keep-alive
        # connections and the ping timers of sockets that already closed.
        hc.graceful_timeout = min(hc.graceful_timeout, RESIDUAL_GRACE)

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(hypercorn_serve, app, hc, shutdown_trigger=trigger)  # type: ignore[arg-type]
        )
        task_status.started(int(binds[0].rsplit(":", 1)[1]) if binds else port)
