"""Serve an app from inside a Trio program: ``await trioapi.serve(app, ...)``.

Two servers carry the same app and handlers:

- ``"hypercorn"`` (default): hypercorn's trio worker; HTTP routes and WebSockets.
- ``"native"``: trioapi's own accept loop, frames read in each handler's
  task; WebSockets only (plain HTTP requests get 426 Upgrade Required), no hop
  between socket and handler, and the client's real close codes.

Shutdown is graceful on both: when ``shutdown_trigger`` returns (or the
surrounding scope is cancelled) every open WebSocket gets close 1001, handlers
see ``WebSocketDisconnect(1001)`` and their teardown runs, within
``graceful_timeout``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import trio

from trioapi._errors import single_error
from trioapi._gc import tune_gc
from trioapi.exceptions import LifespanError
from trioapi.server._config import ServerConfig
from trioapi.server._hypercorn import serve_hypercorn
from trioapi.server._native import serve_native

if TYPE_CHECKING:
    from trioapi.applications import TrioAPI

__all__ = ["ServerConfig", "ServerKind", "serve", "tune_gc"]

logger = logging.getLogger("trioapi")

#: The servers ``serve`` can run: see the module docstring.
ServerKind = Literal["hypercorn", "native"]


async def _wait_forever() -> None:
    await trio.sleep_forever()


async def serve(
    app: TrioAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    server: ServerKind = "hypercorn",
    config: ServerConfig | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until ``shutdown_trigger`` returns or the caller cancels.

    Use it with ``await nursery.start(partial(trioapi.serve, app, port=0))``: the
    port actually bound is reported through ``task_status`` once the app's
    lifespan has started. A lifespan startup failure raises here. ``sock`` is an
    already-listening socket to serve instead of binding ``host:port`` (the CLI
    passes one shared by its worker processes). It sets ``app.tune_gc`` to
    ``config.tune_gc``.
    """
    config = config or ServerConfig()
    trigger = shutdown_trigger or _wait_forever
    app.tune_gc = config.tune_gc

    async def goodbye_then_stop() -> None:
        await trigger()
        logger.info("Shutting down: closing %d WebSocket(s) with 1001", len(app.connections))
        await app.shutdown_connections(config.graceful_timeout)

    if server == "hypercorn":
        run = serve_hypercorn
    elif server == "native":
        run = serve_native
    else:
        raise ValueError(f"server must be 'hypercorn' or 'native', not {server!r}")
    from hypercorn.utils import LifespanFailureError

    try:
        await run(app, host, port, sock, config, goodbye_then_stop, task_status)
    except BaseException as error:
        exc = single_error(error)
        if isinstance(exc, LifespanFailureError):
            raise LifespanError(str(exc)) from None
        if exc is error:
            raise
        raise exc from None
