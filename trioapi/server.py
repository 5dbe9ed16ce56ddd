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

import errno
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio

from trioapi._errors import single_error
from trioapi._gc import tune_gc
from trioapi._lifespan import LifespanDriver
from trioapi.exceptions import LifespanError
from trioapi.transports.native import (
    DEFAULT_PING_TIMEOUT,
    Address,
    NativeConfig,
    Supervisor,
    handle_native_stream,
)

if TYPE_CHECKING:
    from trioapi.applications import TrioAPI

__all__ = ["ServerConfig", "serve", "tune_gc"]

logger = logging.getLogger("trioapi")

ServerKind = Literal["hypercorn", "native"]

#: Seconds left, after every WebSocket said goodbye, for HTTP requests still in flight.
RESIDUAL_GRACE = 0.5


@attrs.frozen
class ServerConfig:
    """Limits shared by both servers; each default is explained in the deployment guide."""

    #: Close 1009 for a larger message (bytes on hypercorn, characters on native for text).
    max_message_size: int = 1024 * 1024
    #: Keepalive ping interval in seconds; ``None`` turns pings off.
    ping_interval: float | None = 20.0
    #: With pings on, drop a peer that has sent nothing (not even a pong) for this
    #: long: hypercorn's ``read_timeout``; natively, the ping's answer deadline is
    #: ``idle_timeout - ping_interval``. Ignored when pings are off, so that a quiet
    #: but healthy client is never dropped.
    idle_timeout: float | None = 60.0
    #: Seconds open WebSockets get to finish after close 1001 on shutdown.
    graceful_timeout: float = 5.0
    #: Seconds a client has to complete its handshake.
    handshake_timeout: float = 10.0
    #: Whether the app tunes the garbage collector once started (``tune_gc``):
    #: ``serve()`` sets the app's ``tune_gc`` to this. Off by default here, since
    #: it changes the whole process you embed the server in; ``trioapi run``, which
    #: owns its process, turns it on (``--no-tune-gc`` to opt out), as does the
    #: app itself under ``hypercorn``.
    tune_gc: bool = False


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
        run = _serve_hypercorn
    elif server == "native":
        run = _serve_native
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


async def _serve_hypercorn(
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


async def _serve_native(
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
    )
    lifespan = LifespanDriver(app)
    async with trio.open_nursery() as app_nursery:
        await lifespan.startup(app_nursery)
        listeners = [sock] if sock is not None else await _bind(host, port)
        bound = listeners[0].getsockname()[1]
        logger.info("trioapi (native) serving on ws://%s:%s", host, bound)
        try:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as server:
                    supervisor = Supervisor(native)
                    server.start_soon(supervisor.run)
                    handler = partial(handle_native_stream, app, native, lifespan.state, supervisor)
                    for listener in listeners:
                        server.start_soon(_accept_loop, listener, handler, connections)
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


async def _bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host:port``, as plain sockets the accept loop can use without a wrapper."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    return [socket.socket(fileno=listener.socket.detach()) for listener in listeners]


#: accept() errors that say the process or system is out of something: wait, then go on.
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
#: accept() errors about one connection that died before it was accepted: skip it.
_DIED_IN_QUEUE = {errno.ECONNABORTED, errno.EPERM, errno.EPROTO}


#: What a listener bound to every address of its family reports as its host.
_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})


async def _accept_loop(
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
