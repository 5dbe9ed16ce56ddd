"""``TrioAPI``: the ASGI application that owns the routes, the lifespan and the app nursery."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import trio

from trioapi._connection import ConnectionRegistry, raises_into_tests, serve_websocket, wait_for_close_answer
from trioapi._errors import is_cancellation, single_error
from trioapi._gc import connection_closed, tune_gc
from trioapi._signals import goodbye_on_sigterm, sigterm_left_to_default
from trioapi.datastructures import State
from trioapi.dependencies.solving import DependencyExitStack, dependency_exit_stack, solve_dependencies
from trioapi.exceptions import HTTPException, RequestValidationError
from trioapi.requests import Request
from trioapi.responses import JSONResponse, Response
from trioapi.routing import APIRoute, APIRouter, APIWebSocketRoute, BaseRoute
from trioapi.security.origin import origin_allowed
from trioapi.websockets import WebSocket

if TYPE_CHECKING:
    from trioapi._types import Receive, Scope, Send
    from trioapi.params import Depends
    from trioapi.requests import HTTPConnection

__all__ = ["TrioAPI"]

logger = logging.getLogger("trioapi")

Lifespan: TypeAlias = Callable[["TrioAPI"], AbstractAsyncContextManager[Mapping[str, Any] | None]]
ExceptionHandler: TypeAlias = Callable[["HTTPConnection", Exception], Awaitable[Response | None]]
Handler = TypeVar("Handler", bound=ExceptionHandler)


@asynccontextmanager
async def _no_lifespan(app: TrioAPI) -> AsyncIterator[None]:
    yield None


class TrioAPI(APIRouter):
    """A Trio ASGI application with FastAPI's WebSocket API.

    Serve it with ``hypercorn --worker-class trio module:app``, ``trioapi run
    module:app`` or ``await trioapi.serve(app)``; test it in memory with
    ``trioapi.testing.TestClient``.

    ``lifespan`` is an async context manager factory taking the app; code before
    its ``yield`` runs at startup, after it at shutdown, and a mapping it yields
    becomes the ASGI lifespan state (``websocket.state`` in every connection).
    While it runs, ``app.nursery`` holds app-wide background tasks.

    ``max_message_size`` makes a longer WebSocket message close the connection
    with 1009, below whatever limit the server itself applies.

    ``allowed_origins``, when given, is the set of ``Origin`` values (such as
    ``"https://example.com"``) allowed to open WebSockets; other handshakes are
    denied with 403 before any handler code runs. Turn it on whenever sockets
    are authenticated by cookies.

    ``tune_gc`` (on by default): once the lifespan has started, freeze the
    startup heap out of the garbage collector's way and collect young objects
    rarely (``trioapi.server.tune_gc``), and every 100 ended connections, so what
    the server leaves per connection does not pile up. Collections of a heap
    holding thousands of connections otherwise set the latency tail and, in a
    fan-out, a third of the throughput. The test client never tunes;
    ``trioapi.serve()`` decides with ``ServerConfig.tune_gc``, ``trioapi run``
    with ``--no-tune-gc``.

    ``handle_sigterm`` (on by default): where the lifespan starts in a server's
    worker process that would die of SIGTERM outright (hypercorn's command
    line: its workers leave SIGTERM to the master), SIGTERM closes every open
    WebSocket with 1001 first, so stopping the whole process group (systemd's
    default) is as graceful as stopping the master. Processes that handle
    SIGTERM themselves, ``trioapi run`` among them, are left alone.
    """

    def __init__(
        self,
        *,
        lifespan: Lifespan | None = None,
        dependencies: Sequence[Depends] | None = None,
        routes: Sequence[BaseRoute] | None = None,
        allowed_origins: Collection[str] | None = None,
        exception_handlers: Mapping[type[Exception], ExceptionHandler] | None = None,
        teardown_timeout: float = 5.0,
        shutdown_grace: float = 5.0,
        max_message_size: int | None = None,
        tune_gc: bool = True,
        handle_sigterm: bool = True,
    ) -> None:
        super().__init__(dependencies=dependencies, routes=routes)
        self.router: APIRouter = self
        self.lifespan_context: Lifespan = lifespan or _no_lifespan
        self.allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)
        self.exception_handlers: dict[type[Exception], ExceptionHandler] = dict(exception_handlers or {})
        self.dependency_overrides: dict[Callable[..., Any], Callable[..., Any]] = {}
        self.teardown_timeout = teardown_timeout
        self.shutdown_grace = shutdown_grace
        self.max_message_size = max_message_size
        #: Tune the garbage collector once the lifespan has started (see ``__init__``).
        self.tune_gc = tune_gc
        #: Say goodbye on SIGTERM in a server's worker process (see ``__init__``).
        self.handle_sigterm = handle_sigterm
        self.state = State()
        self.connections = ConnectionRegistry()
        self._nursery: trio.Nursery | None = None

    # -- app-wide concurrency --------------------------------------------------

    @property
    def nursery(self) -> trio.Nursery:
        """The app nursery, open while the lifespan runs: background tasks live here."""
        if self._nursery is None:
            raise RuntimeError(
                "app.nursery is only open while the app's lifespan runs (under a server, or "
                "inside 'async with TestClient(app)')"
            )
        return self._nursery

    async def shutdown_connections(self, grace: float | None = None) -> None:
        """Say goodbye (close 1001) to every open WebSocket and wait for the handlers to finish."""
        await self.connections.go_away(self.shutdown_grace if grace is None else grace)

    # -- exception handlers ----------------------------------------------------

    def add_exception_handler(self, exc_class: type[Exception], handler: ExceptionHandler) -> None:
        """Call ``handler(connection, exc)`` for ``exc_class`` raised in HTTP and WebSocket endpoints."""
        self.exception_handlers[exc_class] = handler

    def exception_handler(self, exc_class: type[Exception]) -> Callable[[Handler], Handler]:
        """Decorate an ``async def handler(connection, exc)`` for ``exc_class``.

        For an HTTP route it returns the ``Response`` to send; for a WebSocket it
        receives the ``WebSocket`` and may send or close (the connection is
        closed with 1000 afterwards if it did not).
        """

        def decorator(handler: Handler) -> Handler:
            self.add_exception_handler(exc_class, handler)
            return handler

        return decorator

    def lookup_exception_handler(self, exc: Exception) -> ExceptionHandler | None:
        """The handler registered for the closest class of ``exc``, if any."""
        for cls in type(exc).__mro__:
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point."""
        kind = scope["type"]
        if kind == "websocket":
            websocket = WebSocket(scope, receive, send)
            try:
                await self._websocket_session(websocket)  # sets scope["app"]
                await wait_for_close_answer(websocket)
            finally:
                connection_closed()
            return
        scope["app"] = self
        if kind == "http":
            await self._handle_http(scope, receive, send)
        elif kind == "lifespan":
            await self._handle_lifespan(scope, receive, send)
        else:
            raise RuntimeError(f"trioapi cannot serve ASGI scope type {kind!r}")

    async def handle_websocket(self, websocket: WebSocket) -> None:
        """Route one WebSocket handshake and serve it; used by every transport."""
        try:
            await self._websocket_session(websocket)
        finally:
            connection_closed()

    def _websocket_session(self, websocket: WebSocket) -> Coroutine[Any, Any, None]:
        """Route ``websocket``: the coroutine that serves it, or the one that refuses it.

        A plain function that returns the coroutine rather than a coroutine
        itself, so awaiting it adds no frame to the await chain that every idle
        connection keeps alive.
        """
        scope = websocket.scope
        scope["app"] = self
        route, child, _ = self.match(scope)
        if route is None:
            logger.info("WebSocket %s: no route, handshake refused with 404", scope["path"])
            return websocket.deny(404, [(b"content-length", b"0")])
        assert isinstance(route, APIWebSocketRoute)
        scope.update(child)
        websocket.max_message_size = self.max_message_size
        allowed = route.allowed_origins if route.allowed_origins is not None else self.allowed_origins
        if allowed is not None and not origin_allowed(websocket.headers, allowed):
            logger.info("WebSocket %s: Origin %r not allowed", scope["path"], websocket.headers.get("origin"))
            return websocket.deny(403, [(b"content-length", b"0")])
        return serve_websocket(self, route, websocket)

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, child, partial = self.match(scope)
        if route is None:
            status = 405 if partial else 404
            detail = "Method Not Allowed" if partial else "Not Found"
            await JSONResponse({"detail": detail}, status)(scope, receive, send)
            return
        assert isinstance(route, APIRoute)
        scope.update(child)
        request = Request(scope, receive)
        # "request"-scoped dependencies are torn down after the response is sent,
        # "function"-scoped ones when the endpoint returns (Depends(scope=...)).
        async with dependency_exit_stack(self.teardown_timeout) as stack:
            try:
                response = await self._run_http_endpoint(route, request, stack)
            except Exception as exc:
                response = await self._http_error_response(request, exc)
            await response(scope, receive, send)

    async def _run_http_endpoint(
        self, route: APIRoute, request: Request, stack: DependencyExitStack
    ) -> Response:
        async with stack.function_scope():
            values = await solve_dependencies(
                route.plan, request, stack=stack, overrides=self.dependency_overrides
            )
            result = await route.endpoint(**values) if route.is_async else route.endpoint(**values)
        if isinstance(result, Response):
            return result
        return JSONResponse(result, route.status_code)

    async def _http_error_response(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        if isinstance(exc, RequestValidationError):
            return JSONResponse({"detail": exc.errors()}, 422)
        handler = self.lookup_exception_handler(exc)
        if handler is not None:
            response = await handler(request, exc)
            if response is not None:
                return response
        logger.error("Exception in HTTP endpoint for %s", request.scope["path"], exc_info=exc)
        if raises_into_tests(request.scope):
            raise exc
        return JSONResponse({"detail": "Internal Server Error"}, 500)

    async def _handle_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        started = False
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                async with self.lifespan_context(self) as state:
                    if state:
                        if "state" not in scope:
                            raise RuntimeError(
                                "The lifespan yielded state, but this server does not support lifespan state"
                            )
                        scope["state"].update(state)
                    started = True
                    if "trioapi.testing" not in (scope.get("extensions") or {}):
                        if self.tune_gc:
                            tune_gc()
                        if self.handle_sigterm and sigterm_left_to_default():
                            await nursery.start(goodbye_on_sigterm, self)
                    await send({"type": "lifespan.startup.complete"})
                    message = await receive()
                nursery.cancel_scope.cancel()
        except BaseException as group:
            if is_cancellation(group):
                raise  # the server is being cancelled from outside: not a lifespan failure
            exc = single_error(group)
            failure = f"{type(exc).__name__}: {exc}"
            logger.error(
                "Lifespan %s failed: %s", "shutdown" if started else "startup", failure, exc_info=exc
            )
            phase = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{phase}.failed", "message": failure})
            if not isinstance(group, Exception):
                raise
            return
        finally:
            self._nursery = None
        await send({"type": "lifespan.shutdown.complete"})
