"""trioapi's own serving: listening sockets, the accept loop, and the life of a server around them.

The native and trio-websocket servers share all of it and differ only in what
they do with each accepted socket (their ``ConnectionHandler``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import trio

from trioapi._lifespan import LifespanDriver

if TYPE_CHECKING:
    from trioapi.applications import TrioAPI
    from trioapi.server._config import ServerConfig

__all__ = [
    "Address",
    "ConnectionHandler",
    "accept_loop",
    "address",
    "bind",
    "bind_unix",
    "serve_own_listeners",
    "unlink_unix",
]

logger = logging.getLogger("trioapi")

#: A socket address as the scope carries it: (host, port).
Address: TypeAlias = tuple[str, int]

#: Serves one accepted socket: ``handler(conn, peer, local)``; an address is ``None`` when
#: not known (``local`` on a listener bound to every address) or when there is none (on
#: a Unix socket, both).
ConnectionHandler: TypeAlias = Callable[[socket.socket, "Address | None", "Address | None"], Awaitable[None]]


async def serve_own_listeners(
    app: TrioAPI,
    host: str,
    port: int,
    sock: socket.socket | None,
    config: ServerConfig,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    name: str,
    scheme: str = "ws",
    handler_for: Callable[[trio.Nursery, dict[str, Any]], ConnectionHandler],
    task_status: trio.TaskStatus[int],
) -> None:
    """Run ``app``'s lifespan, accept connections, and stop gracefully when ``shutdown_trigger`` returns.

    ``handler_for(server, state)`` makes the per-connection handler once the
    lifespan has started (``state`` is its state; ``server`` a nursery for the
    server's own tasks, cancelled when it stops listening). Each connection runs
    in a task of its own; after the trigger (which has said goodbye to every
    WebSocket) what is left gets ``graceful_timeout`` seconds. ``name`` and
    ``scheme`` say what serves, in the log line that says where.
    """
    lifespan = LifespanDriver(app)
    async with trio.open_nursery() as app_nursery:
        await lifespan.startup(app_nursery)
        listeners = [sock] if sock is not None else await bind(host, port)
        where = address(listeners[0].getsockname())
        bound = 0 if where is None else where[1]  # a Unix socket has no port
        logger.debug("trioapi (%s) listening on %s (%s)", name, listeners[0].getsockname(), scheme)
        try:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as server:
                    handler = handler_for(server, lifespan.state)
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


def bind_unix(path: str, *, mode: int = 0o666, backlog: int = 1024) -> socket.socket:
    """A listening Unix socket at ``path``, which any local user may connect to by default (``mode``).

    A socket file left by a server that died is replaced; one that a live server
    still listens on is not (``OSError`` EADDRINUSE), nor is a file that is not a
    socket. The caller removes the file when done (``unlink_unix``).
    """
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)  # nobody listens: a dead server's leftover
            else:
                raise OSError(errno.EADDRINUSE, f"a server already listens on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def unlink_unix(sock: socket.socket, path: str) -> None:
    """Close a listening Unix socket made by ``bind_unix(path)`` and remove its file."""
    sock.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def address(sockname: Any) -> Address | None:
    """The (host, port) of an IP socket's address; ``None`` for a Unix socket's path."""
    return (str(sockname[0]), int(sockname[1])) if isinstance(sockname, tuple) else None


#: accept() errors that say the process or system is out of something: wait, then go on.
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
#: accept() errors about one connection that died before it was accepted: skip it.
_DIED_IN_QUEUE = {errno.ECONNABORTED, errno.EPERM, errno.EPROTO}


#: What a listener bound to every address of its family reports as its host.
_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})


async def accept_loop(
    listener: socket.socket,
    handler: ConnectionHandler,
    connections: trio.Nursery,
) -> None:
    """Accept connections on ``listener`` and start ``handler`` for each, until cancelled.

    ``handler(conn, peer, local)`` gets the peer's (host, port) and the local one, or
    ``None`` for the local one when the listener listens on every address.

    On plain sockets rather than ``trio.SocketListener``: the native transport
    keeps each connection's plain socket, to read and write it without trio's
    socket layers and to write a frame at once when it can
    (``NativeTransport.write_now``); the trio-websocket server wraps it in a
    ``trio.SocketStream`` itself.
    """
    listener.setblocking(False)
    # The peer's address comes with each accept(); the local one is the listener's unless it
    # listens on every address, where only the connection's own socket can tell. A Unix
    # socket's connections have neither.
    local = address(listener.getsockname())
    if local is not None and local[0] in _ANY_ADDRESS:
        local = None
    ip = listener.family != socket.AF_UNIX
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
        connections.start_soon(handler, conn, (peer[0], peer[1]) if ip else None, local)
        await trio.lowlevel.checkpoint()
