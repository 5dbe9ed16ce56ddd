"""One WebSocket connection, from route match to the last close frame.

Shape of a connection (everything below is opened and owned by trioapi)::

    the server's task for this connection
    └── dependencies                 (solved first; torn down once the nursery has closed)
        └── the connection's nursery (websocket.nursery; its cancel scope is the session's)
            ├── the handler, in the connection's own task (the nursery's body)
            ├── tasks from websocket.start_soon(...)
            └── the stand-in reader, while the handler is busy elsewhere
    then the close that fits (shielded, bounded), and the peer's answer to it

The nursery's cancel scope is cancelled explicitly when the handler returns (so
the tasks it started end with it) and when shutdown's grace runs out; a task
that fails cancels it too, and the connection closes with 1011. When the
server itself cancels the connection (hypercorn does, at the end of its
``graceful_timeout``), the cancellation lands in the handler; a pending
``receive_*`` turns it into ``WebSocketDisconnect(1001)`` and the close frame
carries 1001, instead of leaving the client with 1006.

The error contract is the same on every server: normal return → 1000; return
without accept → 403; ``WebSocketException`` → its code; ``HTTPException`` →
denial response before accept, 1008 after; invalid parameters → 1008 naming the
parameter; anything else → logged with its traceback, then 500 before accept or
1011 after, with no internal detail sent to the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs
import trio

from trioapi._errors import is_cancellation, single_error
from trioapi.dependencies.solving import (
    NO_DEPENDENCIES,
    DependencyExitStack,
    NoDependencies,
    dependency_exit_stack,
    solve_dependencies,
)
from trioapi.exceptions import HTTPException, ValidationError, WebSocketException
from trioapi.responses import JSONResponse
from trioapi.websockets import (
    WebSocket,
    WebSocketDisconnect,
    WebSocketState,
    attach_nursery,
    closed_by_application,
    finish_closing,
    go_away,
    going_away,
    log_ending,
    needs_stand_in,
    read_for_idle_handler,
    still_open,
)

if TYPE_CHECKING:
    from trioapi._types import Scope
    from trioapi.requests import HTTPConnection
    from trioapi.responses import Response
    from trioapi.routing import WebSocketRoute

__all__ = [
    "CLOSE_TIMEOUT",
    "ConnectionPolicy",
    "ConnectionRegistry",
    "ExceptionHandler",
    "refuse_websocket",
    "serve_websocket",
]

logger = logging.getLogger("trioapi")

#: Bound on sending a final close frame, and on waiting for the peer's answer.
CLOSE_TIMEOUT = 2.0

#: How often the registry looks for handlers that stopped receiving, in seconds.
#: A peer that leaves such a handler is noticed within two of these.
IDLE_CHECK_INTERVAL = 0.5

#: ``async def handler(connection, exc)``: what ``TrioAPI.exception_handler`` registers.
ExceptionHandler: TypeAlias = Callable[["HTTPConnection", Exception], Awaitable["Response | None"]]


def raises_into_tests(scope: Scope, what: str = "raise_server_exceptions") -> bool:
    """Whether a test client wants server exceptions (or, ``what="raise_disconnects"``, a
    ``WebSocketDisconnect`` that escaped the handler) re-raised, once they are answered.

    trioapi's test clients say so in their ``trioapi.testing`` scope extension.
    Starlette's ``TestClient`` (``fastapi.testclient``) re-raises whatever escapes
    an app, and ported tests expect both kinds; its scopes are the ones without
    the ``asgi`` key, which the ASGI specification requires of every server (see
    the design notes, "Errors raised into tests").
    """
    testing = (scope.get("extensions") or {}).get("trioapi.testing")
    if testing is not None:
        return bool(testing.get(what))
    return "asgi" not in scope


@attrs.frozen
class ConnectionPolicy:
    """What serving a connection needs from the app, and nothing more of it."""

    #: The open connections, so that shutdown can say goodbye to each.
    registry: ConnectionRegistry
    #: The exception handler registered for an exception's closest class, if any.
    exception_handler: Callable[[Exception], ExceptionHandler | None]
    #: ``app.dependency_overrides`` (the same dict: tests change it after startup).
    dependency_overrides: Mapping[Callable[..., Any], Callable[..., Any]]
    #: Seconds the teardown of the dependencies may take.
    teardown_timeout: float


class Session:
    """One connection's run, registered while it lasts: its WebSocket and the nursery of its handler."""

    __slots__ = ("nursery", "websocket")

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        #: Open while the handler runs; its cancel scope ends the session.
        self.nursery: trio.Nursery | None = None

    def cancel(self) -> None:
        """End the handler and its tasks now (shutdown's grace has run out); teardown still runs."""
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()


async def _final_close(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Send the close frame that ends a session (or finish a refusal), shielded and bounded in time."""
    if still_open(websocket):  # most sessions end closed already: no cancel scope to enter for them
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await websocket.close(code, reason)


async def _deny_http(websocket: WebSocket, exc: HTTPException) -> None:
    """Refuse the handshake with the response an HTTP route would give for ``exc`` (a 403 where
    the server has no denial responses)."""
    response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
        await websocket.deny(response.status_code, response.raw_headers, response.body)


async def _end_with_error(policy: ConnectionPolicy, websocket: WebSocket, error: BaseException) -> bool:
    """Answer an exception that ended a session; return True if tests may see it re-raised (a bug;
    a disconnect, where the test client asks for those too)."""
    exc = single_error(error)
    connecting = websocket.application_state is WebSocketState.CONNECTING
    path = websocket.scope.get("path", "?")
    if isinstance(exc, WebSocketDisconnect):
        logger.debug("WebSocket %s: peer disconnected with %s", path, exc.code)
        # Not a bug; but Starlette's test client sees it leave the app, and a test client may ask for that.
        return raises_into_tests(websocket.scope, "raise_disconnects")
    if isinstance(exc, HTTPException):
        if connecting:
            logger.debug("WebSocket %s: handshake denied with HTTP %s", path, exc.status_code)
            await _deny_http(websocket, exc)
        else:
            await _final_close(websocket, 1008, str(exc.detail))
        return False
    if isinstance(exc, ValidationError):
        logger.info("WebSocket %s: refused before accept: %s", path, exc)
        await _final_close(websocket, 1008, exc.short_reason())
        return False
    if isinstance(exc, WebSocketException):
        logger.info("WebSocket %s: closing with %s (%s)", path, exc.code, exc.reason)
        await _final_close(websocket, exc.code, exc.reason)
        return False
    if isinstance(exc, Exception) and (handler := policy.exception_handler(exc)) is not None:
        await handler(websocket, exc)
        await _final_close(websocket, 1000)
        return False
    if isinstance(error, BaseExceptionGroup):
        for leaf in _leaves(error):  # a handler and a task may both have failed
            logger.error("Exception in WebSocket handler for %s", path, exc_info=leaf)
    else:
        logger.error("Exception in WebSocket handler for %s", path, exc_info=error)
    if connecting:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await websocket.deny(500, [(b"content-length", b"0")])
    else:
        await _final_close(websocket, 1011, "Internal Server Error")
    return True


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        elif not isinstance(exc, trio.Cancelled):
            yield exc


async def serve_websocket(policy: ConnectionPolicy, route: WebSocketRoute, websocket: WebSocket) -> None:
    """Run one WebSocket connection: dependencies, handler, teardown, and the close that fits.

    Never lets an error escape to the server; the one exception is the test
    client asking for server errors to be re-raised.
    """
    started = time.perf_counter()
    session = Session(websocket)
    policy.registry.add(session)
    bug: BaseException | None = None
    # Dependency teardown comes in two parts (``Depends(scope=...)``): the "function"
    # part once the handler and its tasks are done, the "request" part after the final close.
    stack: DependencyExitStack | NoDependencies
    if route.plan.connection_only is not None:
        stack = NO_DEPENDENCIES  # nothing to solve (decided when the route was declared)
    else:
        stack = dependency_exit_stack(policy.teardown_timeout)
    try:
        try:
            async with stack.function_scope():
                if isinstance(stack, NoDependencies):
                    values = dict.fromkeys(route.plan.connection_only or (), websocket)
                else:
                    values = await solve_dependencies(
                        route.plan, websocket, stack=stack, overrides=policy.dependency_overrides
                    )
                failure = None
                try:
                    async with trio.open_nursery() as session.nursery:
                        attach_nursery(websocket, session.nursery)
                        try:
                            await route.endpoint(**values)
                            if session.nursery.child_tasks:  # (a cancel costs, and most handlers start none)
                                session.cancel()  # the handler is done: so are its tasks
                        finally:
                            # Before the nursery's exit, which closes it to new tasks and
                            # then lets others run: no stand-in reader is started there.
                            attach_nursery(websocket, None)
                except BaseExceptionGroup as group:
                    # The handler's (or a task's) one error, as the dependencies and the
                    # error contract expect it, not in the nursery's group of one.
                    if (failure := single_error(group)) is group:
                        raise
                finally:
                    attach_nursery(websocket, None)
                if failure is not None:
                    raise failure  # outside the except block: no cycle through __context__
        except Exception as error:
            if (code := going_away(websocket)) is not None:
                await _final_close(websocket, code, "server shutting down")
            if await _end_with_error(policy, websocket, error) and raises_into_tests(websocket.scope):
                bug = single_error(error)
        except BaseException as error:
            # The session's own cancellations stay inside its nursery: this one is
            # the server's (hypercorn's graceful timeout, say). Say goodbye with 1001.
            if is_cancellation(error):
                go_away(websocket, 1001)
            raise
        finally:
            # Also on trio.Cancelled: the client must still get a close frame that says why.
            if (code := going_away(websocket)) is not None:
                await _final_close(websocket, code, "server shutting down")
        # Return without accept refuses the handshake (403); after accept, 1000.
        await _final_close(websocket, 1000)
        try:
            await stack.aclose()  # the "request"-scoped teardown (shielded, bounded)
        except Exception as error:
            # Nothing is left to tell the client: log it, and re-raise it into tests.
            logger.error(
                "Exception in dependency teardown for %s", websocket.scope.get("path"), exc_info=error
            )
            if bug is None and raises_into_tests(websocket.scope):
                bug = error
        # Our close frame is out: the peer's answer ends the conversation (RFC 6455 7.1.1).
        # Not for an error re-raised into a test: Starlette's test client answers only when
        # its block ends, and then cancels the app, which would lose the error.
        if bug is None and closed_by_application(websocket):
            with trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await finish_closing(websocket)
                except Exception:
                    # The session is over; a server that fails a receive after our close
                    # has nothing more to tell the app.
                    path = websocket.scope.get("path", "?")
                    logger.debug("WebSocket %s: no close answer", path, exc_info=True)
    finally:
        await stack.aclose()  # already done unless the server cancelled us: then it runs here
        policy.registry.discard(session)
        log_ending(websocket, time.perf_counter() - started)
    if bug is not None:
        raise bug


async def refuse_websocket(websocket: WebSocket, status: int) -> None:
    """Refuse a handshake no route will serve (unknown path, Origin not allowed), with an empty body."""
    await websocket.deny(status, [(b"content-length", b"0")])
    log_ending(websocket, 0.0)


class ConnectionRegistry:
    """The open WebSocket connections of one app: shutdown says goodbye to each.

    While the app's lifespan runs, ``run`` also looks every ``IDLE_CHECK_INTERVAL``
    for handlers that have stopped receiving and starts a stand-in reader in
    their connection's nursery, so that a handler that only sends learns that
    its peer has gone, on every server.
    """

    def __init__(self) -> None:
        self._sessions: set[Session] = set()
        # Made only while go_away() waits: connections come and go without it.
        self._empty: trio.Event | None = None
        # Set while the idle check waits for a first connection.
        self._nonempty: trio.Event | None = None

    def add(self, session: Session) -> None:
        """Register a connection that has started."""
        self._sessions.add(session)
        if self._nonempty is not None:
            self._nonempty.set()

    def discard(self, session: Session) -> None:
        """Forget a connection that has ended."""
        self._sessions.discard(session)
        if not self._sessions and self._empty is not None:
            self._empty.set()

    async def _wait_empty(self) -> None:
        if self._sessions:
            if self._empty is None or self._empty.is_set():
                self._empty = trio.Event()
            await self._empty.wait()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[WebSocket]:
        return iter([session.websocket for session in self._sessions])

    async def go_away(self, grace: float) -> None:
        """Close every connection with 1001 and wait up to ``grace`` seconds for their handlers.

        Handlers see ``WebSocketDisconnect(1001)``; those still running after
        ``grace`` are cancelled (their teardown still runs, shielded and bounded).
        """
        async with trio.open_nursery() as nursery:
            for session in list(self._sessions):
                nursery.start_soon(_say_goodbye, session.websocket)
        with trio.move_on_after(grace):
            await self._wait_empty()
        for session in list(self._sessions):
            session.cancel()
        with trio.move_on_after(CLOSE_TIMEOUT + 1):
            await self._wait_empty()

    async def run(self) -> None:
        """Start stand-in readers for idle handlers, until cancelled (in the app nursery)."""
        while True:
            if not self._sessions:
                self._nonempty = trio.Event()
                await self._nonempty.wait()
                self._nonempty = None
            await trio.sleep(IDLE_CHECK_INTERVAL)
            for session in list(self._sessions):
                websocket = session.websocket
                if needs_stand_in(websocket):
                    websocket.nursery.start_soon(read_for_idle_handler, websocket)


async def _say_goodbye(websocket: WebSocket) -> None:
    go_away(websocket, 1001)
    if websocket.application_state is WebSocketState.CONNECTED:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await websocket.close(1001, "server shutting down")
