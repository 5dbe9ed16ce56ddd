"""Routes and routers: which endpoint serves a path, decided once per connection.

A path template such as ``/ws/{room}/{client_id:int}`` is compiled to a regular
expression when the route is declared, and the endpoint's signature is analysed
then too (``trioapi.dependencies``); matching a connection is one regex search,
and nothing on the per-message path looks at the route again.
"""

from __future__ import annotations

import enum
import functools
import inspect
import re
import uuid
import warnings
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs

from trioapi.datastructures import URLPath
from trioapi.dependencies.analysis import EndpointPlan, analyze_endpoint
from trioapi.endpoints import WebSocketEndpoint
from trioapi.exceptions import RouteDefinitionError
from trioapi.messages import RouteMessages, UnsupportedMessageType
from trioapi.websockets import WebSocket

if TYPE_CHECKING:
    from trioapi._types import ASGIApp, Scope
    from trioapi.messages import OnInvalid
    from trioapi.params import Depends

__all__ = [
    "APIRoute",
    "APIRouter",
    "APIWebSocketRoute",
    "BaseRoute",
    "Match",
    "Mount",
    "NoMatchFound",
    "WebSocketRoute",
    "compile_path",
]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class Match(enum.Enum):
    """How well a route fits a connection."""

    NONE = 0
    #: The path fits but the method does not (HTTP 405).
    PARTIAL = 1
    FULL = 2


class NoMatchFound(Exception):
    """``url_path_for`` found no route with that name and those parameters."""

    def __init__(self, name: str, path_params: dict[str, Any]) -> None:
        params = ", ".join(sorted(path_params))
        super().__init__(f'No route exists for name "{name}" and params "{params}".')


# -- path templates -------------------------------------------------------------


@attrs.frozen
class Convertor:
    """How one kind of path parameter is matched, converted, and written back."""

    regex: str
    convert: Callable[[str], Any]
    to_string: Callable[[Any], str] = str


def _float_to_string(value: float) -> str:
    return f"{value:.20f}".rstrip("0").rstrip(".")


CONVERTORS: dict[str, Convertor] = {
    "str": Convertor("[^/]+", str),
    "path": Convertor(".*", str),
    "int": Convertor("[0-9]+", int),
    "float": Convertor(r"[0-9]+(?:\.[0-9]+)?", float, _float_to_string),
    "uuid": Convertor(
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", uuid.UUID
    ),
}

_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?}")


@attrs.frozen
class CompiledPath:
    """A path template compiled for matching and for building URLs."""

    template: str
    regex: re.Pattern[str]
    format: str
    convertors: dict[str, Convertor]

    @property
    def param_names(self) -> frozenset[str]:
        """The names of the template's parameters."""
        return frozenset(self.convertors)


def compile_path(path: str) -> CompiledPath:
    """Compile ``path`` (``{name}`` or ``{name:int|float|str|path|uuid}`` parameters)."""
    if not path.startswith("/"):
        raise RouteDefinitionError(f"Route paths must start with '/': {path!r}")
    regex, fmt, convertors, index = "^", "", {}, 0
    for match in _PARAM.finditer(path):
        name, kind = match.group(1), match.group(2) or "str"
        if kind not in CONVERTORS:
            raise RouteDefinitionError(
                f"Unknown path convertor {kind!r} in {path!r}; use one of {', '.join(CONVERTORS)}"
            )
        if name in convertors:
            raise RouteDefinitionError(f"Duplicate path parameter {name!r} in {path!r}")
        convertor = CONVERTORS[kind]
        regex += re.escape(path[index : match.start()]) + f"(?P<{name}>{convertor.regex})"
        fmt += path[index : match.start()] + "{" + name + "}"
        convertors[name] = convertor
        index = match.end()
    regex += re.escape(path[index:]) + r"\Z"  # not "$", which also matches before a final newline
    fmt += path[index:]
    return CompiledPath(path, re.compile(regex), fmt, convertors)


# -- routes ---------------------------------------------------------------------


class BaseRoute:
    """A route: ``matches`` a scope and builds its own URL with ``url_path_for``."""

    path: str
    name: str | None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Whether this route serves ``scope``, and the scope items to add if it does."""
        raise NotImplementedError

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """The path of this route if it is called ``name`` and takes exactly ``path_params``."""
        raise NotImplementedError


class _EndpointRoute(BaseRoute):
    """A route to one endpoint: its path compiled and its endpoint analysed when declared, once."""

    protocol: Literal["websocket", "http"]

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        name: str | None,
        dependencies: Sequence[Depends] | None,
    ) -> None:
        self.path = path
        self.endpoint = endpoint
        self.name: str = _endpoint_name(endpoint) if name is None else name
        self.dependencies = list(dependencies or ())
        self.compiled = compile_path(path)
        # A path without parameters matches by string equality: no regex per request.
        self._static_path = None if self.compiled.convertors else path
        self.plan: EndpointPlan = analyze_endpoint(
            endpoint,
            path=path,
            path_param_names=self.compiled.param_names,
            kind=self.protocol,
            dependencies=self.dependencies,
        )

    def _match_path(self, scope: Scope) -> dict[str, Any] | None:
        if self._static_path is not None:
            return {} if scope["path"] == self._static_path else None
        match = self.compiled.regex.match(scope["path"])
        if match is None:
            return None
        params: dict[str, Any] = {}
        for name, value in match.groupdict().items():
            params[name] = self.compiled.convertors[name].convert(value)
        return params

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """The path of this route if it is called ``name`` and takes exactly ``path_params``."""
        if name != self.name:
            raise NoMatchFound(name, path_params)
        return URLPath(_fill_template(self.compiled, name, path_params), self.protocol)


def _fill_template(compiled: CompiledPath, name: str, path_params: dict[str, Any]) -> str:
    """``compiled``'s path with exactly its parameters filled in; ``NoMatchFound`` if they do not fit."""
    if set(path_params) != set(compiled.convertors):
        raise NoMatchFound(name, path_params)
    values = {key: compiled.convertors[key].to_string(value) for key, value in path_params.items()}
    for key, text in values.items():
        if "/" in text and compiled.convertors[key] is not CONVERTORS["path"]:
            raise NoMatchFound(name, path_params)
    return compiled.format.format(**values)


def _warn_events_deprecated() -> None:
    warnings.warn(
        "on_event() and add_event_handler() are deprecated, as in FastAPI: use a lifespan instead, "
        "TrioAPI(lifespan=...) with an async context manager (code before its yield runs at startup, "
        "after it at shutdown). Startup and shutdown handlers do not run when the app has a lifespan.",
        DeprecationWarning,
        stacklevel=3,
    )


async def _run_handlers(handlers: Sequence[Callable[[], Any]]) -> None:
    """Call each handler; await what an ``async def`` one returns."""
    for handler in handlers:
        if inspect.isawaitable(result := handler()):
            await result


def _endpoint_name(endpoint: Callable[..., Any]) -> str:
    return getattr(endpoint, "__name__", type(endpoint).__name__)


def _is_async_callable(obj: Any) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(type(obj).__call__)


def _websocket_only(endpoint: Callable[..., Any], path: str) -> Callable[..., Awaitable[None]]:
    """The handler of a ``WebSocketRoute``: it passes the ``WebSocket`` as the one positional argument.

    A ``WebSocketEndpoint`` subclass is instantiated for each connection, as
    Starlette does. The result carries the endpoint's name and keeps it as
    ``__wrapped__``.
    """
    call: Callable[[WebSocket], Awaitable[Any]] = endpoint
    if isinstance(endpoint, type) and issubclass(endpoint, WebSocketEndpoint):
        endpoint_class = endpoint

        async def handler(websocket: WebSocket) -> None:
            await endpoint_class.for_websocket(websocket).serve(websocket)

    elif _is_async_callable(endpoint):
        _check_takes_one_argument(endpoint, path)

        async def handler(websocket: WebSocket) -> None:
            await call(websocket)

    else:
        raise RouteDefinitionError(
            f"WebSocket endpoint {_endpoint_name(endpoint)!r} for {path!r} must be an 'async def' "
            "function taking the WebSocket, or a WebSocketEndpoint subclass: a WebSocket handler "
            "awaits messages, and a plain 'def' would block the server"
        )
    handler.__name__ = handler.__qualname__ = _endpoint_name(endpoint)
    handler.__doc__ = endpoint.__doc__
    return handler


def _check_takes_one_argument(endpoint: Callable[..., Any], path: str) -> None:
    try:
        signature = inspect.signature(endpoint)
    except (TypeError, ValueError):  # a builtin or extension callable: nothing to check
        return
    try:
        signature.bind(None)
    except TypeError as exc:
        raise RouteDefinitionError(
            f"WebSocket endpoint {_endpoint_name(endpoint)!r} for {path!r} is called with the WebSocket "
            f"as its only argument, which its signature {signature} does not allow ({exc}); "
            "for path, query or dependency parameters declare it with websocket(...) instead"
        ) from None


class WebSocketRoute(_EndpointRoute):
    """A WebSocket endpoint at ``path`` that receives only the ``WebSocket`` (Starlette's route).

    What ``websocket_route`` and ``add_websocket_route`` declare: the endpoint
    is called with the ``WebSocket`` as its one positional argument, whatever
    the parameter is called; no dependency injection, no path or query
    parameters (read ``websocket.path_params``). The endpoint is an ``async
    def`` function (or method, or ``functools.partial``) or a
    ``trioapi.endpoints.WebSocketEndpoint`` subclass. ``endpoint`` is the
    function trioapi calls; the one given is its ``__wrapped__``.

    ``allowed_origins`` restricts the ``Origin`` of handshakes on this route,
    as on ``TrioAPI``.
    """

    protocol: Literal["websocket", "http"] = "websocket"

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        name: str | None = None,
        allowed_origins: Collection[str] | None = None,
    ) -> None:
        self._declare(path, _websocket_only(endpoint, path), name, None, allowed_origins)
        # After the analysis, which would have followed __wrapped__ to the endpoint's own signature.
        self.endpoint.__wrapped__ = endpoint  # type: ignore[attr-defined]
        self._given_endpoint = endpoint

    def _declare(
        self,
        path: str,
        endpoint: Callable[..., Any],
        name: str | None,
        dependencies: Sequence[Depends] | None,
        allowed_origins: Collection[str] | None,
    ) -> None:
        super().__init__(path, endpoint, name=name, dependencies=dependencies)
        self.allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """``Match.FULL`` with the converted ``path_params`` for a WebSocket scope on this path."""
        if scope["type"] == "websocket":
            params = self._match_path(scope)
            if params is not None:
                return Match.FULL, {"path_params": params, "route": self, "endpoint": self.endpoint}
        return Match.NONE, {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, name={self.name!r})"


class APIWebSocketRoute(WebSocketRoute):
    """A WebSocket endpoint at ``path``, with its parameters and dependencies injected.

    The endpoint must be an ``async def``; its parameters are analysed now, so a
    shape that cannot work is refused here with a ``RouteDefinitionError`` rather
    than on the first connection.

    ``receives`` and ``sends`` declare the types of the messages the client
    sends and the endpoint answers (``trioapi.messages``): their converters
    are built now, ``websocket.receive_model()`` without an argument uses
    ``receives``, and both describe the route in the app's AsyncAPI document,
    with ``summary``, ``description`` (default: the endpoint's docstring) and
    ``tags``. ``on_invalid``, an ``async def on_invalid(websocket, error)``,
    answers a message that does not fit instead of closing with 1007.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Awaitable[Any]],
        *,
        name: str | None = None,
        dependencies: Sequence[Depends] | None = None,
        allowed_origins: Collection[str] | None = None,
        receives: Any = None,
        sends: Any = None,
        summary: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        on_invalid: OnInvalid | None = None,
    ) -> None:
        if not _is_async_callable(endpoint):
            raise RouteDefinitionError(
                f"WebSocket endpoint {_endpoint_name(endpoint)!r} for {path!r} must be an 'async def' "
                "function: a WebSocket handler awaits messages, and a plain 'def' would block the server"
            )
        self._declare(path, endpoint, name, dependencies, allowed_origins)
        self.receives = receives
        self.sends = sends
        self.summary = summary
        self.description = inspect.getdoc(endpoint) if description is None else description
        self.tags = list(tags or ())
        self.on_invalid = on_invalid
        if on_invalid is not None and not _is_async_callable(on_invalid):
            raise RouteDefinitionError(
                f"on_invalid={on_invalid!r} for {path!r} must be an 'async def on_invalid(websocket, error)'"
            )
        try:
            #: The codecs of ``receives`` and ``sends``, built once, here.
            self.messages = RouteMessages.build(receives, sends, on_invalid)
        except UnsupportedMessageType as exc:
            raise RouteDefinitionError(f"WebSocket route {path!r}: {exc}") from None


class APIRoute(_EndpointRoute):
    """An HTTP endpoint at ``path`` for ``methods``.

    The endpoint may be ``async def`` or a plain ``def`` (run inline: it must not
    block). A ``dict`` or ``list`` result is sent as JSON, a ``Response`` as is.
    """

    protocol: Literal["websocket", "http"] = "http"

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Collection[str] = ("GET",),
        name: str | None = None,
        dependencies: Sequence[Depends] | None = None,
        status_code: int = 200,
    ) -> None:
        super().__init__(path, endpoint, name=name, dependencies=dependencies)
        self.methods = frozenset(method.upper() for method in methods)
        if "GET" in self.methods:
            self.methods |= {"HEAD"}
        self.status_code = status_code
        self.is_async = _is_async_callable(endpoint)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """``FULL`` for this path and method, ``PARTIAL`` for this path with another method."""
        if scope["type"] == "http":
            params = self._match_path(scope)
            if params is not None:
                child = {"path_params": params, "route": self, "endpoint": self.endpoint}
                return (Match.FULL if scope["method"] in self.methods else Match.PARTIAL), child
        return Match.NONE, {}

    def __repr__(self) -> str:
        return f"APIRoute(path={self.path!r}, name={self.name!r}, methods={sorted(self.methods)!r})"


class Mount(BaseRoute):
    """An ASGI app served under a path prefix: ``Mount("/static", StaticFiles(directory="static"))``.

    Every HTTP request whose path starts with ``path + "/"`` goes to ``app``
    with the prefix moved from the scope's ``path`` to its ``root_path``, so the
    app sees ``/app.js`` for ``/static/app.js``. WebSocket handshakes are not
    mounted: declare WebSocket routes on the app or an included router (the
    native and trio-websocket servers carry no ASGI messages to hand a
    mounted app).

    ``url_path_for(name, path="app.js")`` gives ``/static/app.js``; when ``app``
    is a trioapi app or router, ``url_path_for("name:route", ...)`` finds its
    HTTP routes (any of them when the mount has no name).
    """

    def __init__(self, path: str, app: ASGIApp, *, name: str | None = None) -> None:
        path = path.rstrip("/")
        if path and not path.startswith("/"):
            raise RouteDefinitionError(f"A mount path must start with '/': {path!r}")
        self.path = path
        self.app = app
        self.name = name
        self.compiled = compile_path(path + "/{path:path}")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """``Match.FULL`` for an HTTP scope under the prefix, with ``path`` and ``root_path`` moved."""
        if scope["type"] == "http":
            match = self.compiled.regex.match(scope["path"])
            if match is not None:
                params = match.groupdict()
                remaining = "/" + params.pop("path")
                converted = {
                    key: self.compiled.convertors[key].convert(value) for key, value in params.items()
                }
                prefix = scope["path"][: len(scope["path"]) - len(remaining)]
                return Match.FULL, {
                    "path": remaining,
                    "root_path": scope.get("root_path", "") + prefix,
                    "path_params": {**scope.get("path_params", {}), **converted},
                    "endpoint": self.app,
                }
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """``prefix/path`` for this mount's ``name``; a mounted router's route for ``"name:route"``."""
        if self.name is not None and name == self.name and "path" in path_params:
            inner = str(path_params.pop("path")).lstrip("/")
            prefix = _fill_template(self.compiled, name, {**path_params, "path": ""})
            return URLPath(prefix + inner, "http")
        if isinstance(self.app, APIRouter) and (self.name is None or name.startswith(self.name + ":")):
            mount_params = set(self.compiled.convertors) - {"path"}
            own = {key: path_params.pop(key) for key in list(path_params) if key in mount_params}
            inner_name = name if self.name is None else name[len(self.name) + 1 :]
            child = self.app.url_path_for(inner_name, **path_params)
            if child.protocol == "http":  # the mount does not take WebSocket handshakes
                prefix = _fill_template(self.compiled, name, {**own, "path": ""}).rstrip("/")
                return URLPath(prefix + child, child.protocol)
        raise NoMatchFound(name, path_params)

    def __repr__(self) -> str:
        return f"Mount(path={self.path!r}, name={self.name!r}, app={self.app!r})"


# -- routers --------------------------------------------------------------------


class APIRouter:
    """A group of routes with a shared ``prefix`` and ``dependencies``, for ``include_router``."""

    def __init__(
        self,
        *,
        prefix: str = "",
        dependencies: Sequence[Depends] | None = None,
        routes: Sequence[BaseRoute] | None = None,
    ) -> None:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise RouteDefinitionError(
                f"A router prefix must start with '/' and not end with '/': {prefix!r}"
            )
        self.prefix = prefix
        self.dependencies = list(dependencies or ())
        self.routes: list[BaseRoute] = list(routes or ())
        #: Handlers from ``on_event("startup")`` / ``add_event_handler`` (deprecated).
        self.on_startup: list[Callable[[], Any]] = []
        #: Handlers from ``on_event("shutdown")`` / ``add_event_handler`` (deprecated).
        self.on_shutdown: list[Callable[[], Any]] = []

    # WebSocket routes

    def add_api_websocket_route(
        self,
        path: str,
        endpoint: Callable[..., Awaitable[Any]],
        *,
        name: str | None = None,
        dependencies: Sequence[Depends] | None = None,
        allowed_origins: Collection[str] | None = None,
        receives: Any = None,
        sends: Any = None,
        summary: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        on_invalid: OnInvalid | None = None,
    ) -> APIWebSocketRoute:
        """Add a WebSocket endpoint at ``prefix + path`` and return its route.

        ``receives``, ``sends``, ``summary``, ``description``, ``tags`` and
        ``on_invalid`` declare its messages (see ``APIWebSocketRoute``).
        """
        route = APIWebSocketRoute(
            self.prefix + path,
            endpoint,
            name=name,
            dependencies=[*self.dependencies, *(dependencies or ())],
            allowed_origins=allowed_origins,
            receives=receives,
            sends=sends,
            summary=summary,
            description=description,
            tags=tags,
            on_invalid=on_invalid,
        )
        self.routes.append(route)
        return route

    def websocket(
        self,
        path: str,
        *,
        name: str | None = None,
        dependencies: Sequence[Depends] | None = None,
        allowed_origins: Collection[str] | None = None,
        receives: Any = None,
        sends: Any = None,
        summary: str | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        on_invalid: OnInvalid | None = None,
    ) -> Callable[[Endpoint], Endpoint]:
        """Decorate an ``async def`` handler as the WebSocket endpoint for ``path``.

        ``receives=ClientMessage, sends=ServerMessage`` declare the message types
        (``websocket.receive_model()`` then needs no argument, and the AsyncAPI
        document describes them); see ``APIWebSocketRoute`` for the rest.
        """

        def decorator(endpoint: Endpoint) -> Endpoint:
            self.add_api_websocket_route(
                path,
                endpoint,
                name=name,
                dependencies=dependencies,
                allowed_origins=allowed_origins,
                receives=receives,
                sends=sends,
                summary=summary,
                description=description,
                tags=tags,
                on_invalid=on_invalid,
            )
            return endpoint

        return decorator

    def add_websocket_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        name: str | None = None,
        *,
        allowed_origins: Collection[str] | None = None,
    ) -> WebSocketRoute:
        """Add a Starlette-style WebSocket endpoint at ``prefix + path``: it gets only the ``WebSocket``.

        ``endpoint`` is an ``async def`` taking the WebSocket, or a
        ``WebSocketEndpoint`` subclass; see ``WebSocketRoute``. Unlike FastAPI,
        the router's ``prefix`` applies, as it does to every other route.
        """
        route = WebSocketRoute(self.prefix + path, endpoint, name=name, allowed_origins=allowed_origins)
        self.routes.append(route)
        return route

    def websocket_route(self, path: str, name: str | None = None) -> Callable[[Endpoint], Endpoint]:
        """Decorate a Starlette-style WebSocket endpoint for ``path`` (see ``add_websocket_route``)."""

        def decorator(endpoint: Endpoint) -> Endpoint:
            self.add_websocket_route(path, endpoint, name=name)
            return endpoint

        return decorator

    # HTTP routes

    def add_api_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Collection[str] = ("GET",),
        name: str | None = None,
        dependencies: Sequence[Depends] | None = None,
        status_code: int = 200,
    ) -> APIRoute:
        """Add an HTTP endpoint at ``prefix + path`` and return its route."""
        route = APIRoute(
            self.prefix + path,
            endpoint,
            methods=methods,
            name=name,
            dependencies=[*self.dependencies, *(dependencies or ())],
            status_code=status_code,
        )
        self.routes.append(route)
        return route

    def api_route(
        self,
        path: str,
        *,
        methods: Collection[str] = ("GET",),
        name: str | None = None,
        dependencies: Sequence[Depends] | None = None,
        status_code: int = 200,
    ) -> Callable[[Endpoint], Endpoint]:
        """Decorate an HTTP endpoint for ``path`` and ``methods``."""

        def decorator(endpoint: Endpoint) -> Endpoint:
            self.add_api_route(
                path, endpoint, methods=methods, name=name, dependencies=dependencies, status_code=status_code
            )
            return endpoint

        return decorator

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Decorate a GET endpoint."""
        return self.api_route(path, methods=("GET",), **options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Decorate a POST endpoint."""
        return self.api_route(path, methods=("POST",), **options)

    def put(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Decorate a PUT endpoint."""
        return self.api_route(path, methods=("PUT",), **options)

    def patch(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Decorate a PATCH endpoint."""
        return self.api_route(path, methods=("PATCH",), **options)

    def delete(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        """Decorate a DELETE endpoint."""
        return self.api_route(path, methods=("DELETE",), **options)

    # Startup and shutdown handlers (FastAPI's deprecated events)

    def add_event_handler(self, event_type: str, func: Callable[[], Any]) -> None:
        """Run ``func()`` (sync, or async and awaited) at ``"startup"`` or ``"shutdown"``.

        Deprecated, as in FastAPI: write a ``lifespan`` instead. The handlers
        run inside the app's lifespan (``app.nursery`` is open), in the order
        they were added, startup before the server accepts connections,
        shutdown after they have closed. As in FastAPI and Starlette, they do
        not run when the app has a ``lifespan=``: it is one or the other.
        """
        _warn_events_deprecated()
        self._add_event_handler(event_type, func)

    def on_event(self, event_type: str) -> Callable[[Endpoint], Endpoint]:
        """Decorate a ``"startup"`` or ``"shutdown"`` handler (deprecated: see ``add_event_handler``)."""
        _warn_events_deprecated()

        def decorator(func: Endpoint) -> Endpoint:
            self._add_event_handler(event_type, func)
            return func

        return decorator

    def _add_event_handler(self, event_type: str, func: Callable[[], Any]) -> None:
        if event_type == "startup":
            self.on_startup.append(func)
        elif event_type == "shutdown":
            self.on_shutdown.append(func)
        else:
            raise ValueError(f'Unknown event type {event_type!r}: use "startup" or "shutdown"')

    async def startup(self) -> None:
        """Run the ``startup`` handlers, in order."""
        await _run_handlers(self.on_startup)

    async def shutdown(self) -> None:
        """Run the ``shutdown`` handlers, in order."""
        await _run_handlers(self.on_shutdown)

    # Composition

    def mount(self, path: str, app: ASGIApp, name: str | None = None) -> Mount:
        """Serve the ASGI ``app`` (``StaticFiles``, another app) for HTTP requests under ``prefix + path``."""
        route = Mount(self.prefix + path, app, name=name)
        self.routes.append(route)
        return route

    def include_router(
        self,
        router: APIRouter,
        *,
        prefix: str = "",
        dependencies: Sequence[Depends] | None = None,
    ) -> None:
        """Add copies of ``router``'s routes under ``prefix``, with ``dependencies`` run first.

        The routes are re-declared (and re-analysed) now, so later changes to
        ``router`` do not leak into this one.
        """
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise RouteDefinitionError(
                f"An include prefix must start with '/' and not end with '/': {prefix!r}"
            )
        extra = list(dependencies or ())
        self.on_startup.extend(router.on_startup)
        self.on_shutdown.extend(router.on_shutdown)
        for route in router.routes:
            if isinstance(route, Mount):
                self.mount(prefix + route.path, route.app, name=route.name)
            elif isinstance(route, APIWebSocketRoute):
                self.add_api_websocket_route(
                    prefix + route.path,
                    route.endpoint,
                    name=route.name,
                    dependencies=[*extra, *route.dependencies],
                    allowed_origins=route.allowed_origins,
                    receives=route.receives,
                    sends=route.sends,
                    summary=route.summary,
                    description=route.description,
                    tags=route.tags,
                    on_invalid=route.on_invalid,
                )
            elif isinstance(route, WebSocketRoute):
                self.add_websocket_route(
                    prefix + route.path,
                    route._given_endpoint,
                    name=route.name,
                    allowed_origins=route.allowed_origins,
                )
            elif isinstance(route, APIRoute):
                self.add_api_route(
                    prefix + route.path,
                    route.endpoint,
                    methods=route.methods - {"HEAD"},
                    name=route.name,
                    dependencies=[*extra, *route.dependencies],
                    status_code=route.status_code,
                )
            else:
                raise TypeError(f"Cannot include route {route!r}: not a trioapi route or mount")

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """The path of the route called ``name`` with ``path_params``; ``NoMatchFound`` if none fits."""
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)

    def match(self, scope: Scope) -> tuple[BaseRoute | None, Scope, bool]:
        """The first route that fully matches ``scope`` (and its child scope).

        The last item says whether some route matched the path with another
        method, so that the caller can answer 405 rather than 404.
        """
        partial = False
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route, child, partial
            if match is Match.PARTIAL:
                partial = True
        return None, {}, partial
