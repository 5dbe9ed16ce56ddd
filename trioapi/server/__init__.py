"""Serve an app from inside a Trio program: ``await trioapi.serve(app, ...)``.

Three servers carry the same app and handlers:

- ``"hypercorn"`` (default): hypercorn's trio worker, through ASGI; HTTP routes
  and WebSockets.
- ``"trio-websocket"``: every connection is a ``trio_websocket`` connection
  (its reader task, its ``ping``, the client's real close codes), in trioapi's
  own accept loop; WebSocket routes only (plain HTTP requests get 426).
- ``"native"``: trioapi's own engine, frames read in each handler's task with
  no hop between socket and handler, the fastest; WebSocket routes only.

Shutdown is graceful on all three: when ``shutdown_trigger`` returns (or the
surrounding scope is cancelled) every open WebSocket gets close 1001, handlers
see ``WebSocketDisconnect(1001)`` and their teardown runs, within
``graceful_timeout``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import trio

from trioapi._errors import single_error
from trioapi._lifespan import LifespanDriver
from trioapi.exceptions import LifespanError
from trioapi.server._config import ServerConfig
from trioapi.server._hypercorn import serve_hypercorn
from trioapi.server._listen import bind_unix, unlink_unix
from trioapi.server._native import serve_native
from trioapi.server._process import tune_gc
from trioapi.server._trio_websocket import handle_trio_websocket, serve_trio_websocket

if TYPE_CHECKING:
    from trioapi.applications import TrioAPI

__all__ = ["ServerConfig", "ServerKind", "handle_trio_websocket", "lifespan", "serve", "tune_gc"]

logger = logging.getLogger("trioapi")

#: The servers ``serve`` can run: see the module docstring.
ServerKind = Literal["hypercorn", "native", "trio-websocket"]

_SERVERS: dict[str, Callable[..., Awaitable[None]]] = {
    "hypercorn": serve_hypercorn,
    "native": serve_native,
    "trio-websocket": serve_trio_websocket,
}


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
    uds: str | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until ``shutdown_trigger`` returns or the caller cancels.

    Use it with ``await nursery.start(partial(trioapi.serve, app, port=0))``: the
    port actually bound is reported through ``task_status`` once the app's
    lifespan has started. A lifespan startup failure raises here. ``sock`` is an
    already-listening socket to serve instead of binding ``host:port`` (the CLI
    passes one shared by its worker processes). ``uds`` is the path of a Unix
    socket to listen on instead (behind a proxy on the same machine), removed
    again when the server stops; the port reported is then 0. With ``config.tune_gc`` the
    garbage collector is tuned for a server once the app has started (``tune_gc``).
    """
    config = config or ServerConfig()
    trigger = shutdown_trigger or _wait_forever

    async def goodbye_then_stop() -> None:
        await trigger()
        logger.info("Shutting down: closing %d WebSocket(s) with 1001", len(app.connections))
        await app.shutdown_connections(config.graceful_timeout)

    run = _SERVERS.get(server)
    if run is None:
        raise ValueError(f"server must be one of {', '.join(map(repr, _SERVERS))}, not {server!r}")
    if uds is not None:
        if sock is not None:
            raise ValueError("pass sock or uds, not both")
        unix = bind_unix(uds)
        try:
            await serve(
                app,
                server=server,
                config=config,
                shutdown_trigger=shutdown_trigger,
                sock=unix,
                task_status=task_status,
            )
        finally:
            unlink_unix(unix, uds)
        return
    from hypercorn.utils import LifespanFailureError

    try:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(run, app, host, port, sock, config, goodbye_then_stop)
            if config.tune_gc:
                tune_gc()
            task_status.started(bound)
    except BaseException as error:
        exc = single_error(error)
        if isinstance(exc, LifespanFailureError):
            raise LifespanError(str(exc)) from None
        if exc is error:
            raise
        raise exc from None


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    """Run ``app``'s lifespan around a block: startup on entry, shutdown on exit.

    For serving an app from a server of your own (``handle_trio_websocket``):
    the lifespan's startup and shutdown run, and ``app.nursery`` is open, as under
    ``serve``. Yields the lifespan state; a startup failure raises ``LifespanError``.
    """
    driver = LifespanDriver(app)
    async with trio.open_nursery() as nursery:
        await driver.startup(nursery)
        try:
            yield driver.state
        finally:
            with trio.CancelScope(shield=True):
                await driver.shutdown()
