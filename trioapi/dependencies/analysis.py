"""Read an endpoint's signature once, when its route is declared, into an ``EndpointPlan``.

Every parameter of the endpoint and of its dependencies (recursively) is sorted
into one of four kinds:

- the connection itself (annotated ``WebSocket``, ``Request`` or ``HTTPConnection``);
- ``SecurityScopes``, the scopes requested by the ``Security`` markers above it;
- a value read from the query, path, headers, cookies or (HTTP only) JSON body,
  with its converter built now;
- another dependency (``Depends`` / ``Security``), analysed in turn.

Shapes that cannot work are refused here with ``RouteDefinitionError``, so a
mistake shows up at import time rather than on the first connection. The plan
is immutable apart from one cache: the plans of ``dependency_overrides``
replacements, analysed on first use (overrides are set by tests after the
routes exist).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import typing
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Annotated, Any, Literal

import attrs

from trioapi.dependencies.converters import (
    Converter,
    UnsupportedAnnotation,
    constrained,
    is_body_type,
    json_converter,
    sequence_type,
    split_optional,
    strip_annotated,
    text_converter,
    text_list_converter,
)
from trioapi.exceptions import RouteDefinitionError
from trioapi.params import Body, DependencyScope, Depends, Header, Location, Param, Security
from trioapi.requests import HTTPConnection, Request
from trioapi.security.oauth2 import SecurityScopes
from trioapi.websockets import WebSocket

__all__ = [
    "DependantPlan",
    "DependencyParam",
    "EndpointPlan",
    "Invocation",
    "ValueParam",
    "analyze_endpoint",
    "check_teardown_order",
]

Kind = Literal["websocket", "http"]


class Invocation(enum.Enum):
    """How a dependency is called for each connection."""

    #: ``value = call(**kwargs)`` in a worker thread, so a blocking function
    #: (or class constructor) never stalls the event loop, as FastAPI runs it in
    #: its thread pool.
    SYNC = "sync"
    #: ``value = await call(**kwargs)``.
    ASYNC = "async"
    #: ``value = await stack.enter_async_context(call(**kwargs))``; async
    #: generator functions are wrapped with ``asynccontextmanager`` at analysis.
    CONTEXT_MANAGER = "context manager"
    #: ``call(**kwargs)`` makes a sync context manager, made and entered in a
    #: worker thread and exited in one at teardown; sync generator functions are
    #: wrapped with ``contextmanager`` at analysis.
    SYNC_CONTEXT_MANAGER = "sync context manager"


@attrs.frozen(eq=False)
class ValueParam:
    """A parameter read from the request: where from, and how to convert it."""

    #: The keyword argument name.
    name: str
    location: Location
    #: The query key, header name (lower case), cookie name, path name or body member.
    key: str
    required: bool
    default: Any
    #: ``list[X]`` of a repeated query key or header: the converter gets every value.
    many: bool
    convert: Converter
    #: Body only: read the member ``key`` of the JSON object, not the whole body.
    embed: bool = False
    #: The declared type and marker (``Query(description=...)``), kept for documentation (AsyncAPI).
    annotation: Any = None
    marker: Param | None = None


@attrs.frozen(eq=False)
class DependencyParam:
    """A ``Depends``/``Security`` parameter (or a route-level dependency when ``name`` is None)."""

    name: str | None
    #: The callable as declared: the key looked up in ``dependency_overrides``.
    dependency: Callable[..., Any]
    plan: DependantPlan
    use_cache: bool
    #: The scopes this marker adds (``Security(..., scopes=[...])``).
    scopes: tuple[str, ...]
    #: When its context manager (if it enters one) is exited: the marker's
    #: ``scope``, else ``"request"``. An override's replacement inherits it.
    teardown: DependencyScope = "request"


@attrs.frozen(eq=False)
class DependantPlan:
    """One callable (an endpoint or a dependency) and how to fill in its parameters."""

    #: The callable as declared; with ``scopes`` it keys the per-connection cache.
    call: Callable[..., Any]
    #: What is actually called: ``call``, or ``asynccontextmanager(call)`` for async generators.
    function: Callable[..., Any]
    invocation: Invocation
    #: ``call`` if hashable, else a stand-in keyed by identity, for the cache.
    cache_identity: Hashable
    values: tuple[ValueParam, ...] = ()
    #: Names of parameters that receive the connection object.
    connections: tuple[str, ...] = ()
    #: Names of parameters that receive ``SecurityScopes``.
    security_scopes: tuple[str, ...] = ()
    #: In declaration order, which is the order they are called in.
    dependencies: tuple[DependencyParam, ...] = ()
    #: Whether calling it enters a context manager on the exit stack (torn down later).
    enters_context: bool = attrs.field(init=False)

    @enters_context.default
    def _enters_context(self) -> bool:
        return self.invocation in (Invocation.CONTEXT_MANAGER, Invocation.SYNC_CONTEXT_MANAGER)


@attrs.frozen(eq=False)
class EndpointPlan:
    """Everything needed to fill in an endpoint's arguments for one connection.

    Built by ``analyze_endpoint``; walked by ``solving.solve_dependencies``.
    """

    call: Callable[..., Any]
    path: str
    kind: Kind
    path_param_names: frozenset[str]
    #: The endpoint's own parameters.
    root: DependantPlan
    #: Route- and router-level ``dependencies=[...]``, run first, for their side effects.
    dependencies: tuple[DependencyParam, ...]
    #: Whether the endpoint must be awaited.
    is_coroutine: bool
    #: Plans of ``dependency_overrides`` replacements, by replacement (see ``plan_for_override``).
    override_plans: dict[Callable[..., Any], DependantPlan] = attrs.field(factory=dict, repr=False)
    #: When the endpoint takes nothing but the connection (``async def ws(websocket: WebSocket)``,
    #: the common case): the names it takes it under, so solving is one dict. ``None`` otherwise.
    connection_only: tuple[str, ...] | None = attrs.field(init=False, repr=False)

    @connection_only.default
    def _connection_only(self) -> tuple[str, ...] | None:
        root = self.root
        if self.dependencies or root.dependencies or root.values or root.security_scopes:
            return None
        return root.connections

    def walk(self) -> Iterator[tuple[DependantPlan, tuple[str, ...]]]:
        """Each callable the plan runs, once, depth first from the route-level dependencies.

        With each, the ``Security`` scopes requested on the way down to it. For
        documentation (the AsyncAPI document reads parameters and security
        schemes from here); serving a connection never walks the plan this way.
        """
        seen: set[int] = set()

        def visit(
            plan: DependantPlan, scopes: tuple[str, ...]
        ) -> Iterator[tuple[DependantPlan, tuple[str, ...]]]:
            if id(plan) in seen:
                return
            seen.add(id(plan))
            yield plan, scopes
            for dependency in plan.dependencies:
                yield from visit(dependency.plan, scopes + dependency.scopes)

        for dependency in self.dependencies:
            yield from visit(dependency.plan, dependency.scopes)
        yield from visit(self.root, ())

    def plan_for_override(self, replacement: Callable[..., Any], teardown: DependencyScope) -> DependantPlan:
        """The plan of an override's replacement, analysed the first time it is used.

        The replacement is analysed against this route (its path parameters, its
        kind), so the plan is cached per route. It is torn down with the
        ``teardown`` scope of the dependency it replaces. Raises
        ``RouteDefinitionError`` on a connection if the replacement cannot be
        served that way.
        """
        plan = self.override_plans.get(replacement)
        if plan is None:
            context = _Context(self.path, self.path_param_names, self.kind)
            plan = _analyze_callable(replacement, context, role="dependency override")
            self.override_plans[replacement] = plan
        check_teardown_order(plan, teardown, f"override {_describe(replacement)} of route {self.path!r}")
        return plan


def analyze_endpoint(
    call: Callable[..., Any],
    *,
    path: str,
    path_param_names: frozenset[str],
    kind: Kind,
    dependencies: Sequence[Depends] = (),
) -> EndpointPlan:
    """Analyse ``call`` and its dependencies for a route at ``path``; done once per route.

    Raises ``RouteDefinitionError`` naming the function and parameter when a
    parameter cannot be supplied for this kind of route, an annotation has no
    converter, or a ``"request"``-scoped ``yield`` dependency depends on a
    ``"function"``-scoped one.
    """
    context = _Context(path, frozenset(path_param_names), kind)
    root = _analyze_callable(call, context, role="endpoint")
    if root.enters_context:
        raise RouteDefinitionError(
            f"endpoint {_describe(call)} for {path!r} is a generator or context manager; "
            "an endpoint must be a plain 'async def' function (move setup and teardown into a "
            "dependency with 'yield')"
        )
    route_dependencies = tuple(
        _dependency_param(None, marker, None, context, where=f"dependencies=[...] of route {path!r}")
        for marker in dependencies
    )
    return EndpointPlan(
        call=call,
        path=path,
        kind=kind,
        path_param_names=context.path_param_names,
        root=root,
        dependencies=route_dependencies,
        is_coroutine=root.invocation is Invocation.ASYNC,
    )


# -- internals ------------------------------------------------------------------


@attrs.frozen
class _Context:
    """What about the route shapes the analysis of every callable under it."""

    path: str
    path_param_names: frozenset[str]
    kind: Kind


@attrs.frozen(eq=False)
class _ByIdentity:
    """Cache key for an unhashable dependency (an attrs instance with ``eq``): its identity."""

    target: object

    def __hash__(self) -> int:
        return id(self.target)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.target is self.target


def _describe(call: Any) -> str:
    name = getattr(call, "__qualname__", None) or type(call).__qualname__
    module = getattr(call, "__module__", None) or type(call).__module__
    return f"'{module}.{name}'"


def _invocation_of(
    call: Callable[..., Any], signature: inspect.Signature
) -> tuple[Invocation, Callable[..., Any]]:
    """Decide once how ``call`` is invoked."""
    if inspect.isclass(call):
        # Calling a class constructs it; one that is an async context manager is
        # entered. A sync context manager class is only constructed, as in FastAPI.
        if hasattr(call, "__aenter__") and hasattr(call, "__aexit__"):
            return Invocation.CONTEXT_MANAGER, call
        return Invocation.SYNC, call
    # A callable object (``HTTPBearer()``) is judged by its ``__call__``.
    is_object = not (inspect.isroutine(call) or isinstance(call, functools.partial))
    target = type(call).__call__ if is_object else call
    if inspect.isasyncgenfunction(target):
        return Invocation.CONTEXT_MANAGER, contextlib.asynccontextmanager(call)
    if inspect.iscoroutinefunction(target):
        return Invocation.ASYNC, call
    if inspect.isgeneratorfunction(target):
        return Invocation.SYNC_CONTEXT_MANAGER, contextlib.contextmanager(call)
    # ``@contextmanager`` / ``@asynccontextmanager`` hide the generator behind a
    # plain function that returns the context manager.
    unwrapped = inspect.unwrap(target)
    if inspect.isgeneratorfunction(unwrapped):
        return Invocation.SYNC_CONTEXT_MANAGER, call
    if inspect.isasyncgenfunction(unwrapped):
        return Invocation.CONTEXT_MANAGER, call
    returns = signature.return_annotation
    returns = typing.get_origin(returns) or returns
    if isinstance(returns, type) and hasattr(returns, "__aenter__") and hasattr(returns, "__aexit__"):
        return Invocation.CONTEXT_MANAGER, call
    return Invocation.SYNC, call


def _signature(call: Callable[..., Any], role: str) -> inspect.Signature:
    try:
        try:
            signature = inspect.signature(call, eval_str=True)
        except NameError:
            # Only the parameters matter here: a return annotation that names a local
            # class (an endpoint returning a model defined in a test, say) stays unresolved.
            signature = inspect.signature(call, eval_str=False)
            globals_ = getattr(inspect.unwrap(call), "__globals__", {})
            signature = signature.replace(
                parameters=[
                    p.replace(annotation=eval(p.annotation, globals_)) if isinstance(p.annotation, str) else p
                    for p in signature.parameters.values()
                ],
                return_annotation=inspect.Signature.empty,
            )
        return _with_inherited_annotations(call, signature)
    except NameError as exc:
        raise RouteDefinitionError(
            f"cannot resolve the annotations of {role} {_describe(call)}: {exc}. Define the types it "
            "names at module level (not inside a function) so they can be looked up"
        ) from None
    except (TypeError, ValueError) as exc:
        raise RouteDefinitionError(f"cannot read the signature of {role} {_describe(call)}: {exc}") from None


def _with_inherited_annotations(call: Callable[..., Any], signature: inspect.Signature) -> inspect.Signature:
    """A callable object's ``__call__`` takes the annotations it leaves out from the one it overrides.

    So ``class Auth(HTTPBearer): async def __call__(self, request): ...`` still
    receives the connection as ``request``, as the scheme it extends declares.
    """
    if inspect.isclass(call) or inspect.isroutine(call) or isinstance(call, functools.partial):
        return signature
    empty = inspect.Parameter.empty
    missing = {name for name, p in signature.parameters.items() if p.annotation is empty}
    if not missing:
        return signature
    found: dict[str, Any] = {}
    for base in type(call).__mro__[1:]:
        method = vars(base).get("__call__")
        if method is None or not missing - found.keys():
            continue
        for name, parameter in inspect.signature(method, eval_str=True).parameters.items():
            if name in missing and name not in found and parameter.annotation is not empty:
                found[name] = parameter.annotation
    if not found:
        return signature
    return signature.replace(
        parameters=[
            p.replace(annotation=found[name]) if name in found else p
            for name, p in signature.parameters.items()
        ]
    )


def _analyze_callable(call: Callable[..., Any], context: _Context, *, role: str) -> DependantPlan:
    signature = _signature(call, role)
    invocation, function = _invocation_of(call, signature)
    values: list[ValueParam] = []
    connections: list[str] = []
    scopes: list[str] = []
    dependencies: list[DependencyParam] = []
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue  # nothing is passed to *args/**kwargs
        where = f"parameter {parameter.name!r} of {role} {_describe(call)} (route {context.path!r})"
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise RouteDefinitionError(f"{where} is positional-only; trioapi passes arguments by name")
        found = _classify(parameter, context, where)
        if isinstance(found, ValueParam):
            values.append(found)
        elif isinstance(found, DependencyParam):
            dependencies.append(found)
        elif found == "security_scopes":
            scopes.append(parameter.name)
        else:
            connections.append(parameter.name)
    try:
        hash(call)
        identity: Hashable = call
    except TypeError:
        identity = _ByIdentity(call)
    return DependantPlan(
        call=call,
        function=function,
        invocation=invocation,
        cache_identity=identity,
        values=tuple(values),
        connections=tuple(connections),
        security_scopes=tuple(scopes),
        dependencies=tuple(dependencies),
    )


def _classify(
    parameter: inspect.Parameter, context: _Context, where: str
) -> ValueParam | DependencyParam | Literal["connection", "security_scopes"]:
    """Sort one parameter into the kind of thing that will be passed to it."""
    annotation = parameter.annotation
    default = parameter.default
    base = annotation
    marker: Param | Depends | None = None
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        found = [item for item in metadata if isinstance(item, Param | Depends)]
        if len(found) > 1:
            raise RouteDefinitionError(f"{where} has several trioapi markers in Annotated[...]; keep one")
        if found:
            marker = found[0]
            if isinstance(marker, Param) and not marker.required:
                raise RouteDefinitionError(
                    f"{where}: give the default after '=', not inside Annotated[..., "
                    f"{type(marker).__name__}(...)]"
                )
    if isinstance(default, Param | Depends):
        if marker is not None:
            raise RouteDefinitionError(f"{where} has a marker both in Annotated[...] and as its default")
        marker = default
        default = default.default if isinstance(default, Param) else inspect.Parameter.empty

    if isinstance(marker, Depends):
        # The annotation describes what the dependency returns; it is never converted.
        return _dependency_param(parameter.name, marker, base, context, where)

    plain = strip_annotated(base)
    if isinstance(plain, type) and issubclass(plain, HTTPConnection):
        if marker is not None:
            raise RouteDefinitionError(
                f"{where} is the connection; it cannot also be a {type(marker).__name__}"
            )
        _check_connection_kind(plain, context, where)
        return "connection"
    if plain is SecurityScopes:
        return "security_scopes"

    if default is inspect.Parameter.empty:
        default = ...
    if isinstance(marker, Param):
        location = marker.location
    elif parameter.name in context.path_param_names:
        location = "path"
    elif is_body_type(plain):
        location = "body"
    else:
        location = "query"
    return _value_param(parameter.name, location, marker, plain, default, context, where)


def _check_connection_kind(annotation: type, context: _Context, where: str) -> None:
    if context.kind == "websocket" and issubclass(annotation, Request):
        raise RouteDefinitionError(
            f"{where} asks for a Request, but this is a WebSocket route; annotate it with WebSocket, "
            "or with HTTPConnection to serve HTTP and WebSocket routes alike"
        )
    if context.kind == "http" and issubclass(annotation, WebSocket):
        raise RouteDefinitionError(
            f"{where} asks for a WebSocket, but this is an HTTP route; annotate it with Request, "
            "or with HTTPConnection to serve HTTP and WebSocket routes alike"
        )


def _dependency_param(
    name: str | None, marker: Depends, annotation: Any, context: _Context, where: str
) -> DependencyParam:
    dependency = marker.dependency
    if dependency is None:
        # ``db: Database = Depends()`` calls the annotation itself.
        candidate = strip_annotated(annotation)
        if not (isinstance(candidate, type) and candidate not in (object, str, int, float, bool, bytes)):
            raise RouteDefinitionError(
                f"{where}: {type(marker).__name__}() has no dependency and the annotation "
                f"{annotation!r} is not a class to call; write {type(marker).__name__}(some_callable)"
            )
        dependency = candidate
    if not callable(dependency):
        raise RouteDefinitionError(f"{where}: {type(marker).__name__}({dependency!r}) is not callable")
    plan = _analyze_callable(dependency, context, role="dependency")
    teardown = marker.scope or "request"
    check_teardown_order(plan, teardown, where)
    return DependencyParam(
        name=name,
        dependency=dependency,
        plan=plan,
        use_cache=marker.use_cache,
        scopes=marker.scopes if isinstance(marker, Security) else (),
        teardown=teardown,
    )


def check_teardown_order(plan: DependantPlan, teardown: DependencyScope, where: str) -> None:
    """Refuse a ``"request"``-scoped context manager that uses a ``"function"``-scoped dependency.

    The function-scoped one is torn down when the endpoint returns, before the
    request-scoped one that still holds its value (FastAPI refuses the same).
    """
    if teardown != "request" or not plan.enters_context:
        return
    for dependency in plan.dependencies:
        if dependency.teardown == "function":
            # FastAPI's wording, then which dependency and what to do.
            name = getattr(plan.call, "__name__", type(plan.call).__name__)
            raise RouteDefinitionError(
                f'The dependency "{name}" has a scope of "request", it cannot depend on dependencies with '
                f'scope "function" ({where}: {_describe(dependency.dependency)} is torn down when the '
                "endpoint returns, before it; give both the same scope)"
            )


def _value_param(
    name: str,
    location: Location,
    marker: Param | None,
    annotation: Any,
    default: Any,
    context: _Context,
    where: str,
) -> ValueParam:
    alias = marker.alias if marker is not None else None
    key = alias or name
    if location == "header":
        convert_underscores = marker.convert_underscores if isinstance(marker, Header) else True
        key = (alias or (name.replace("_", "-") if convert_underscores else name)).lower()
    if location == "path" and key not in context.path_param_names:
        raise RouteDefinitionError(
            f"{where} is a path parameter {key!r}, but the path {context.path!r} has no {{{key}}}"
        )
    if location == "body" and context.kind == "websocket":
        hint = " (use Query() for a repeated query value)" if sequence_type(annotation) else ""
        raise RouteDefinitionError(
            f"{where} would be read from a request body, which a WebSocket handshake does not have{hint}; "
            "receive the data as a message instead (await websocket.receive_json())"
        )

    inner, _ = split_optional(annotation)
    many = False
    try:
        if location == "body":
            convert = json_converter(annotation)
        else:
            sequence = sequence_type(inner)
            if sequence is not None:
                if location not in ("query", "header"):
                    raise RouteDefinitionError(
                        f"{where}: only query and header parameters can be lists (repeated values)"
                    )
                many = True
                convert = text_list_converter(*sequence)
            else:
                convert = text_converter(annotation)
                if location == "path":
                    convert = _unless_converted(convert)
        if marker is not None:
            convert = constrained(convert, marker, inner)
    except UnsupportedAnnotation as exc:
        raise RouteDefinitionError(f"{where}: {exc}") from None

    return ValueParam(
        name=name,
        location=location,
        key=key,
        required=location == "path" or default is ...,
        default=None if default is ... else default,
        many=many,
        convert=convert,
        embed=isinstance(marker, Body) and marker.embed,
        annotation=annotation,
        marker=marker,
    )


def _unless_converted(convert: Converter) -> Converter:
    """Path values may arrive converted by the router's ``{name:int}``: convert only strings."""

    def convert_text(value: Any) -> Any:
        return convert(value) if isinstance(value, str) else value

    return convert_text
