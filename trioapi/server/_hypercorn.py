"""Serving with hypercorn's trio worker: HTTP routes and WebSockets, through ASGI."""

from __future__ import annotations

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
    hc.accesslog = None
    return hc


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
