"""``TrioAPI``: the ASGI application that owns the routes, the lifespan and the app nursery."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import attrs
import trio

from trioapi import _access
from trioapi._connection import (
    ConnectionPolicy,
    ConnectionRegistry,
    ExceptionHandler,
    raises_into_tests,
    refuse_websocket,
    serve_websocket,
)
from trioapi._errors import is_cancellation, single_error
from trioapi.asyncapi import DEFAULT_UI_URL, asyncapi_document, asyncapi_html
from trioapi.datastructures import State
from trioapi.dependencies.solving import DependencyExitStack, dependency_exit_stack, solve_dependencies
from trioapi.exceptions import HTTPException, RequestValidationError
from trioapi.middleware import Middleware
from trioapi.requests import Request
from trioapi.responses import HTMLResponse, JSONResponse, Response
from trioapi.routing import APIRoute, APIRouter, BaseRoute, Mount, WebSocketRoute
from trioapi.security.origin import origin_allowed
from trioapi.server._process import adopt_worker_process, connection_closed
from trioapi.websockets import WebSocket

if TYPE_CHECKING:
    from trioapi._types import ASGIApp, Message, Receive, Scope, Send
    from trioapi.params import Depends

__all__ = ["TrioAPI"]

logger = logging.getLogger("trioapi")

Lifespan: TypeAlias = Callable[["TrioAPI"], AbstractAsyncContextManager[Mapping[str, Any] | None]]
Handler = TypeVar("Handler", bound=ExceptionHandler)


@asynccontextmanager
async def _event_handlers_lifespan(app: TrioAPI) -> AsyncIterator[None]:
    """The lifespan of an app without ``lifespan=``: its (deprecated) startup and shutdown handlers."""
    await app.startup()
    try:
        yield None
    finally:
        await app.shutdown()


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

    What happens to the process the app runs in (garbage-collector tuning,
    SIGTERM) is decided by whoever runs it: ``trioapi run`` and ``trioapi.serve``
    (``ServerConfig``), or, in the worker processes of hypercorn's own command
    line, the policy of ``trioapi.server``'s process module.

    ``title``, ``version`` and ``description`` describe the app in its AsyncAPI
    document (``app.asyncapi()``), served at ``asyncapi_url`` (default
    ``/asyncapi.json``) with a page for humans at ``asyncapi_docs_url`` (default
    ``/asyncapi``), which loads the AsyncAPI component from ``asyncapi_ui_url``;
    ``None`` turns either off. ``asyncapi_servers`` is the document's
    ``servers`` object (``{"production": {"host": "example.com", "protocol": "wss"}}``).

    ``middleware`` is a list of ``trioapi.middleware.Middleware``: ASGI
    middleware around the app, the first one outermost, on every server.
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
        title: str = "trioapi",
        version: str = "0.1.0",
        description: str | None = None,
        asyncapi_url: str | None = "/asyncapi.json",
        asyncapi_docs_url: str | None = "/asyncapi",
        asyncapi_ui_url: str = DEFAULT_UI_URL,
        asyncapi_servers: Mapping[str, Mapping[str, Any]] | None = None,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        super().__init__(dependencies=dependencies, routes=routes)
        #: The ``Middleware`` around the app, outermost first (``add_middleware`` adds one).
        self.user_middleware: list[Middleware] = list(middleware or ())
        #: The middleware built around the app, once it has first run.
        self.middleware_stack: ASGIApp | None = None
        self.router: APIRouter = self
        self.lifespan_context: Lifespan = lifespan or _event_handlers_lifespan
        self.allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)
        self.exception_handlers: dict[type[Exception], ExceptionHandler] = dict(exception_handlers or {})
        self.dependency_overrides: dict[Callable[..., Any], Callable[..., Any]] = {}
        self.shutdown_grace = shutdown_grace
        self.max_message_size = max_message_size
        self.state = State()
        #: The open WebSocket connections (``len(app.connections)``; iterating gives each ``WebSocket``).
        self.connections = ConnectionRegistry()
        self._policy = ConnectionPolicy(
            registry=self.connections,
            exception_handler=self.lookup_exception_handler,
            dependency_overrides=self.dependency_overrides,
            teardown_timeout=teardown_timeout,
        )
        self._nursery: trio.Nursery | None = None
        # -- the AsyncAPI document and its page (trioapi.asyncapi) --
        self.title = title
        self.version = version
        self.description = description
        self.asyncapi_url = asyncapi_url
        self.asyncapi_docs_url = asyncapi_docs_url
        self.asyncapi_ui_url = asyncapi_ui_url
        self.asyncapi_servers = asyncapi_servers
        #: The document, built by the first ``asyncapi()`` call once the routes exist.
        self.asyncapi_schema: dict[str, Any] | None = None
        self._add_asyncapi_routes()

    # -- AsyncAPI ----------------------------------------------------------------

    def asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI 3.0 document of this app's WebSocket routes, built once and kept."""
        if self.asyncapi_schema is None:
            self.asyncapi_schema = asyncapi_document(
                self.routes,
                title=self.title,
                version=self.version,
                description=self.description,
                servers=self.asyncapi_servers,
            )
        return self.asyncapi_schema

    def _add_asyncapi_routes(self) -> None:
        """Serve the document and its page over HTTP (ASGI servers; the native one has no HTTP)."""
        json_url = self.asyncapi_url
        if json_url is None:
            return

        async def asyncapi_json() -> JSONResponse:
            return JSONResponse(self.asyncapi())

        self.add_api_route(json_url, asyncapi_json, name="asyncapi_json")
        if self.asyncapi_docs_url is None:
            return

        async def asyncapi_docs() -> HTMLResponse:
            page = asyncapi_html(asyncapi_url=json_url, title=self.title, ui_url=self.asyncapi_ui_url)
            return HTMLResponse(page)

        self.add_api_route(self.asyncapi_docs_url, asyncapi_docs, name="asyncapi_docs")

    @property
    def teardown_timeout(self) -> float:
        """Seconds the teardown of a connection's dependencies may take."""
        return self._policy.teardown_timeout

    @teardown_timeout.setter
    def teardown_timeout(self, value: float) -> None:
        self._policy = attrs.evolve(self._policy, teardown_timeout=value)

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

    # -- middleware ------------------------------------------------------------

    def add_middleware(self, middleware_class: Callable[..., ASGIApp], *args: Any, **kwargs: Any) -> None:
        """Wrap the app in ``middleware_class(app, *args, **kwargs)``, outside the middleware added before."""
        if self.middleware_stack is not None:
            raise RuntimeError("Cannot add middleware after an application has started")
        self.user_middleware.insert(0, Middleware(middleware_class, *args, **kwargs))

    def _middleware(self) -> ASGIApp:
        """The middleware around the app, built the first time it is needed."""
        if self.middleware_stack is None:
            app: ASGIApp = self._serve_asgi
            for cls, args, kwargs in reversed(self.user_middleware):
                app = cls(app, *args, **kwargs)
            self.middleware_stack = app
        return self.middleware_stack

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point: the middleware, if any, then the app."""
        if scope["type"] == "websocket":
            try:
                if self.user_middleware:
                    await self._middleware()(scope, receive, send)
                else:
                    # No frame between the server and the connection runner.
                    await self._websocket_session(WebSocket(scope, receive, send))  # sets scope["app"]
            finally:
                connection_closed()
        elif self.user_middleware:
            await self._middleware()(scope, receive, send)
        else:
            await self._serve_asgi(scope, receive, send)

    async def handle_websocket(self, websocket: WebSocket) -> None:
        """Route one WebSocket handshake and serve it; used by trioapi's own servers.

        Middleware gets the ASGI messages of ``websocket``'s raw API, as it gets
        the server's under an ASGI server.
        """
        try:
            if self.user_middleware:
                await self._middleware()(websocket.scope, websocket.receive, websocket.send)
            else:
                await self._websocket_session(websocket)
        finally:
            connection_closed()

    async def _serve_asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app itself, under its middleware: every ASGI scope type."""
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket_session(WebSocket(scope, receive, send))
            return
        scope["app"] = self
        if kind == "http":
            await self._handle_http(scope, receive, send)
        elif kind == "lifespan":
            await self._handle_lifespan(scope, receive, send)
        else:
            raise RuntimeError(f"trioapi cannot serve ASGI scope type {kind!r}")

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
            return refuse_websocket(websocket, 404)
        assert isinstance(route, WebSocketRoute)
        scope.update(child)
        websocket.max_message_size = self.max_message_size
        allowed = route.allowed_origins if route.allowed_origins is not None else self.allowed_origins
        if allowed is not None and not origin_allowed(websocket.headers, allowed):
            logger.info("WebSocket %s: Origin %r not allowed", scope["path"], websocket.headers.get("origin"))
            return refuse_websocket(websocket, 403)
        # serve_websocket uses only what every WebSocketRoute has (plan, endpoint).
        return serve_websocket(self._policy, route, websocket)

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = trio.current_time()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._answer_http(scope, receive, send_and_note)
        finally:
            _access.http_request(scope, status, trio.current_time() - started)

    async def _answer_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, child, partial = self.match(scope)
        if route is None:
            status = 405 if partial else 404
            detail = "Method Not Allowed" if partial else "Not Found"
            await JSONResponse({"detail": detail}, status)(scope, receive, send)
            return
        scope.update(child)
        if isinstance(route, Mount):
            await route.app(scope, receive, send)
            return
        assert isinstance(route, APIRoute)
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
                    nursery.start_soon(self.connections.run)
                    if "trioapi.testing" not in (scope.get("extensions") or {}):
                        await adopt_worker_process(nursery, self.shutdown_connections)
                    await send({"type": "lifespan.startup.complete"})
                    message = await receive()
                nursery.cancel_scope.cancel()
        except BaseException as group:
            if is_cancellation(group):
                raise  # the server is being cancelled from outside: not a lifespan failure
            exc = single_error(group)
            failure = f"{type(exc).__name__}: {exc}"
            phase = "shutdown" if started else "startup"
            if isinstance(exc, OSError):  # a broker or a database out of reach: no bug to trace
                logger.error("Lifespan %s failed: %s", phase, failure)
                logger.debug("Lifespan %s failure", phase, exc_info=exc)
            else:
                logger.error("Lifespan %s failed: %s", phase, failure, exc_info=exc)
            await send({"type": f"lifespan.{phase}.failed", "message": failure})
            if not isinstance(group, Exception):
                raise
            return
        finally:
            self._nursery = None
        await send({"type": "lifespan.shutdown.complete"})
