"""One WebSocket connection, from route match to the last close frame.

Shape of a connection (everything below is owned by trioapi)::

    the server's task for this connection
    └── session scope (cancelled by a failed task, or by shutdown after its grace)
        └── dependencies → handler → teardown (shielded, bounded) → final close frame
    tasks from websocket.start_soon(...)   in the app nursery, each in a scope of
                                           its own; cancelled and awaited when the
                                           session ends, so none outlives it

No nursery, task or shield per connection unless the handler starts a task:
an idle connection costs its await chain and little else. When the server
itself cancels the connection (hypercorn does, at the end of its
``graceful_timeout``), the cancellation lands in the handler; a pending
``receive_*`` turns it into ``WebSocketDisconnect(1001)`` and the final close
frame carries 1001, instead of leaving the client with 1006.

The error contract is the same on every server: normal return → 1000; return
without accept → 403; ``WebSocketException`` → its code; ``HTTPException`` →
denial response before accept, 1008 after; invalid parameters → 1008 naming the
parameter; anything else → logged with its traceback, then 500 before accept or
1011 after, with no internal detail sent to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio

from trioapi._errors import is_cancellation, single_error
from trioapi.dependencies.solving import dependency_exit_stack, solve_dependencies
from trioapi.exceptions import HTTPException, ValidationError, WebSocketException
from trioapi.responses import JSONResponse
from trioapi.websockets import WebSocket, WebSocketDisconnect, WebSocketState

if TYPE_CHECKING:
    from trioapi._types import Scope
    from trioapi.applications import TrioAPI
    from trioapi.routing import APIWebSocketRoute

logger = logging.getLogger("trioapi")

#: Bound on sending a final close frame; a peer that does not read cannot hold us.
CLOSE_TIMEOUT = 2.0


def raises_into_tests(scope: Scope) -> bool:
    """Whether the test client asked for server exceptions to be re-raised."""
    testing = (scope.get("extensions") or {}).get("trioapi.testing")
    return bool(testing and testing.get("raise_server_exceptions"))


async def _final_close(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Send the close frame that ends a session, shielded and bounded in time."""
    state = websocket.application_state
    if state is WebSocketState.CONNECTED or state is WebSocketState.CONNECTING:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await websocket.close(code, reason)


async def wait_for_close_answer(websocket: WebSocket) -> None:
    """If the app closed an accepted connection the peer has not closed, wait for its answer.

    Bounded by ``CLOSE_TIMEOUT``; for servers reached through ASGI (the native
    server does the same for its own connections).
    """
    if websocket._local_close is not None and websocket.client_state is WebSocketState.CONNECTED:
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await websocket._transport.finish()
            except Exception:
                # The session is over; a server that fails a receive after our close
                # has nothing more to tell the app.
                logger.debug("WebSocket %s: no close answer", websocket.scope.get("path", "?"), exc_info=True)
        websocket.client_state = WebSocketState.DISCONNECTED


async def _deny_http(websocket: WebSocket, exc: HTTPException) -> None:
    """Refuse the handshake with the response an HTTP route would give for ``exc``."""
    response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
        await websocket.send_denial_response(response)


async def _end_with_error(app: TrioAPI, websocket: WebSocket, error: BaseException) -> bool:
    """Answer an exception that ended a session; return True if it was a bug to re-raise in tests."""
    exc = single_error(error)
    connecting = websocket.application_state is WebSocketState.CONNECTING
    path = websocket.scope.get("path", "?")
    if isinstance(exc, WebSocketDisconnect):
        logger.debug("WebSocket %s: peer disconnected with %s", path, exc.code)
        return False
    if isinstance(exc, HTTPException):
        if connecting:
            logger.info("WebSocket %s: handshake denied with HTTP %s", path, exc.status_code)
            await _deny_http(websocket, exc)
        else:
            await _final_close(websocket, 1008, str(exc.detail))
        return False
    if isinstance(exc, ValidationError):
        logger.info("WebSocket %s: rejected before accept: %s", path, exc)
        await _final_close(websocket, 1008, exc.short_reason())
        return False
    if isinstance(exc, WebSocketException):
        logger.info("WebSocket %s: closing with %s (%s)", path, exc.code, exc.reason)
        await _final_close(websocket, exc.code, exc.reason)
        return False
    if isinstance(exc, Exception) and (handler := app.lookup_exception_handler(exc)) is not None:
        await handler(websocket, exc)
        await _final_close(websocket, 1000)
        return False
    logger.error("Exception in WebSocket handler for %s", path, exc_info=error)
    if connecting:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await websocket.deny(500, [(b"content-length", b"0")])
    else:
        await _final_close(websocket, 1011, "Internal Server Error")
    return True


async def serve_websocket(
    app: TrioAPI, route: APIWebSocketRoute, websocket: WebSocket, host: trio.Nursery | None = None
) -> None:
    """Run one WebSocket connection: dependencies, handler, teardown, and the close that fits.

    Never lets an error escape to the server; the one exception is the test
    client asking for server errors to be re-raised. Tasks from
    ``websocket.start_soon`` run in ``host``: the app nursery while the lifespan
    is open (a connection that never starts one pays for no nursery of its own),
    else a nursery opened here. Either way they end before this returns.

    One coroutine frame for the whole session, on purpose: every idle connection
    keeps the frames of its await chain alive.
    """
    if host is None:
        host = app._nursery
        if host is None:
            async with trio.open_nursery() as nursery:
                await serve_websocket(app, route, websocket, nursery)
            return
    session_scope = websocket._session_scope = trio.CancelScope()
    websocket._runner = trio.lowlevel.current_task()
    websocket._host = host
    app.connections.add(websocket)
    bug: BaseException | None = None
    # Dependency teardown in two parts (Depends(scope=...)): "function"-scoped
    # when the handler returns, "request"-scoped after the final close frame and
    # the connection's tasks, in the outer finally below.
    stack = None if route.plan.connection_only is not None else dependency_exit_stack(app.teardown_timeout)
    try:
        with session_scope:
            try:
                if stack is None:
                    # Nothing to solve or tear down (decided when the route was declared).
                    await route.endpoint(**dict.fromkeys(route.plan.connection_only or (), websocket))
                else:
                    async with stack.function_scope():
                        values = await solve_dependencies(
                            route.plan, websocket, stack=stack, overrides=app.dependency_overrides
                        )
                        await route.endpoint(**values)
            except Exception as error:
                if websocket._going_away is not None:
                    await _final_close(websocket, websocket._going_away, "server shutting down")
                if await _end_with_error(app, websocket, error) and raises_into_tests(websocket.scope):
                    bug = error
            except BaseException as error:
                # A cancellation that is not ours (a failed task, the registry's
                # grace running out) comes from the server: say goodbye with 1001.
                if is_cancellation(error) and not session_scope.cancel_called:
                    websocket._go_away(1001)
                raise
            finally:
                # Also on trio.Cancelled (shutdown, or a failed connection task):
                # the client must still get a close frame that says why.
                if websocket._failure is not None:
                    await _final_close(websocket, 1011, "Internal Server Error")
                elif websocket._going_away is not None:
                    await _final_close(websocket, websocket._going_away, "server shutting down")
            # Return without accept refuses the handshake (403); after accept, 1000.
            await _final_close(websocket, 1000)
    finally:
        websocket._host = None
        tasks = websocket._tasks
        if tasks is not None:
            await tasks.aclose()
        if stack is not None:
            try:
                await stack.aclose()  # the "request"-scoped teardown (shielded, bounded)
            except Exception as error:
                # Nothing is left to tell the client: log it, and re-raise into tests.
                path = websocket.scope.get("path", "?")
                logger.error("Exception in dependency teardown for %s", path, exc_info=error)
                if bug is None and raises_into_tests(websocket.scope):
                    bug = error
        app.connections.discard(websocket)
    if bug is None and websocket._failure is not None and raises_into_tests(websocket.scope):
        bug = websocket._failure
    if bug is not None:
        raise bug


class ConnectionRegistry:
    """The open WebSocket connections of one app, so shutdown can say goodbye to each."""

    def __init__(self) -> None:
        self._connections: set[WebSocket] = set()
        # Made only while go_away() waits: connections come and go without it.
        self._empty: trio.Event | None = None

    def add(self, websocket: WebSocket) -> None:
        """Register a connection that has started."""
        self._connections.add(websocket)

    def discard(self, websocket: WebSocket) -> None:
        """Forget a connection that has ended."""
        self._connections.discard(websocket)
        if not self._connections and self._empty is not None:
            self._empty.set()

    async def _wait_empty(self) -> None:
        if self._connections:
            if self._empty is None or self._empty.is_set():
                self._empty = trio.Event()
            await self._empty.wait()

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[WebSocket]:
        return iter(list(self._connections))

    async def go_away(self, grace: float) -> None:
        """Close every connection with 1001 and wait up to ``grace`` seconds for their handlers.

        Handlers see ``WebSocketDisconnect(1001)``; those still running after
        ``grace`` are cancelled (their teardown still runs, shielded and bounded).
        """
        async with trio.open_nursery() as nursery:
            for websocket in self:
                nursery.start_soon(_say_goodbye, websocket)
        with trio.move_on_after(grace):
            await self._wait_empty()
        for websocket in self:
            if websocket._session_scope is not None:
                websocket._session_scope.cancel()
        with trio.move_on_after(CLOSE_TIMEOUT + 1):
            await self._wait_empty()


async def _say_goodbye(websocket: WebSocket) -> None:
    websocket._go_away(1001)
    if websocket.application_state is WebSocketState.CONNECTED:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await websocket.close(1001, "server shutting down")
