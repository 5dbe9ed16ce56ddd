"""Fill in an endpoint's arguments for one connection by walking its ``EndpointPlan``.

Solving runs in two phases:

1. Read and convert every parameter of the endpoint and of every dependency
   (following ``dependency_overrides``). Nothing is called yet, so an invalid
   request is refused with all its errors at once, and no dependency has
   opened a resource it would then have to release.
2. Call the dependencies depth first, in declaration order: route-level
   ``dependencies=[...]`` first, then the endpoint's own. Each result is cached
   for the connection by ``(callable, scopes)`` unless ``use_cache=False``;
   context managers (and async generators) are entered on the exit stack.

``dependency_exit_stack`` is that stack: it closes every entered context
manager exactly once, in reverse order, shielded from cancellation and bounded
in time, and throws the exception that ended the handler into each of them.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Coroutine, Hashable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar

import trio

from trioapi.dependencies.analysis import (
    DependantPlan,
    DependencyParam,
    EndpointPlan,
    Invocation,
    ValueParam,
)
from trioapi.dependencies.converters import Invalid, error, prefixed
from trioapi.exceptions import RequestValidationError, ValidationError, WebSocketRequestValidationError
from trioapi.requests import HTTPConnection, Request
from trioapi.security.oauth2 import SecurityScopes

__all__ = ["DependencyExitStack", "dependency_exit_stack", "solve_dependencies"]

logger = logging.getLogger("trioapi.dependencies")

_MISSING: Any = object()

T = TypeVar("T")


async def solve_dependencies(
    plan: EndpointPlan,
    connection: HTTPConnection,
    *,
    stack: DependencyExitStack | AsyncExitStack,
    overrides: Mapping[Callable[..., Any], Callable[..., Any]],
    cache: dict[Any, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments for ``plan``'s endpoint, for this connection.

    Raises ``WebSocketRequestValidationError`` (WebSocket routes) or
    ``RequestValidationError`` (HTTP routes) listing every invalid or missing
    parameter, before any dependency runs; otherwise whatever a dependency
    raises (``HTTPException``, ``WebSocketException``...) propagates. Context
    managers entered before such an error are already on ``stack``, so run this
    inside ``dependency_exit_stack`` and they are closed.
    """
    if plan.connection_only is not None:
        # Nothing to read, convert or call (decided when the route was declared).
        return dict.fromkeys(plan.connection_only, connection)
    solver = _Solver(plan, connection, stack, overrides, {} if cache is None else cache)
    await solver.convert_values()
    for dependency in plan.dependencies:
        await solver.run(dependency, ())
    return await solver.arguments(plan.root, ())


class DependencyExitStack:
    """The context managers one connection's dependencies entered, and their teardown.

    Use it as ``async with dependency_exit_stack(timeout) as stack``. Teardown
    runs when the block ends however it ends: return, exception, disconnect, or
    cancellation (server shutdown). It is shielded so the code after a
    dependency's ``yield`` can still await (close a database session, say) while
    the connection is being cancelled; ``timeout`` bounds it, after which what is
    still running is cancelled and a warning logged; the teardowns not reached
    yet still run, once each, but with ``trio.Cancelled`` thrown in, so only
    their non-blocking cleanup (``finally``) completes. As with
    ``contextlib.AsyncExitStack``, the exception that ended the block is thrown
    into each context manager (code after a bare ``yield`` runs only on success:
    use ``try``/``finally``); one may suppress an ``Exception``, never a
    cancellation or a ``BaseException``.

    The underlying ``AsyncExitStack`` is made on the first context entered: most
    WebSocket endpoints enter none, and every idle connection holds this object.
    """

    __slots__ = ("_stack", "_timeout")

    def __init__(self, timeout: float = 5.0) -> None:
        self._stack: AsyncExitStack | None = None
        self._timeout = timeout

    async def enter_async_context(self, manager: AbstractAsyncContextManager[T]) -> T:
        """Enter ``manager`` now; it exits with the others, in reverse order."""
        if self._stack is None:
            self._stack = AsyncExitStack()
        return await self._stack.enter_async_context(manager)

    async def __aenter__(self) -> DependencyExitStack:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._stack is None:
            return False
        suppressed = await _close(self._stack, exc, self._timeout)
        return suppressed and isinstance(exc, Exception)


def dependency_exit_stack(timeout: float = 5.0) -> DependencyExitStack:
    # ``timeout`` budgets the teardown only, not the block; fail_after cannot express that.
    """A ``DependencyExitStack`` whose teardown is shielded and bounded by ``timeout`` seconds."""
    return DependencyExitStack(timeout)


async def _close(stack: AsyncExitStack, exc: BaseException | None, budget: float) -> bool:
    """Close ``stack`` shielded within ``budget`` seconds; whether it suppressed ``exc``."""
    with trio.CancelScope(shield=True, deadline=trio.current_time() + budget) as scope:
        if exc is None:
            await stack.aclose()
            return False
        return bool(await stack.__aexit__(type(exc), exc, exc.__traceback__))
    # Reached only when the deadline cancelled a teardown that was still running.
    if scope.cancelled_caught:
        logger.warning("Dependency teardown took longer than %.1f s and was cancelled", budget)
    return False


class _Solver:
    """The state of solving one plan for one connection."""

    def __init__(
        self,
        plan: EndpointPlan,
        connection: HTTPConnection,
        stack: DependencyExitStack | AsyncExitStack,
        overrides: Mapping[Callable[..., Any], Callable[..., Any]],
        cache: dict[Any, Any],
    ) -> None:
        self.plan = plan
        self.connection = connection
        self.stack = stack
        self.overrides = overrides
        self.cache = cache
        self.values: dict[ValueParam, Any] = {}

    def resolve(self, dependency: DependencyParam) -> DependantPlan:
        """The plan to run for ``dependency``: its own, or its override's."""
        if self.overrides:
            try:
                replacement = self.overrides.get(dependency.dependency)
            except TypeError:  # an unhashable dependency cannot be a key of the overrides
                replacement = None
            if replacement is not None:
                return self.plan.plan_for_override(replacement)
        return dependency.plan

    def walk(self) -> Iterator[DependantPlan]:
        """Every plan reachable from the endpoint (overrides applied), each once."""
        seen: set[int] = set()
        pending = [self.plan.root, *(self.resolve(d) for d in reversed(self.plan.dependencies))]
        while pending:
            node = pending.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            pending.extend(self.resolve(d) for d in reversed(node.dependencies))

    # -- phase 1: values -------------------------------------------------------

    async def convert_values(self) -> None:
        """Read and convert every parameter; raise one validation error listing all failures."""
        errors: list[dict[str, Any]] = []
        body_params: list[ValueParam] = []
        for node in self.walk():
            for param in node.values:
                if param.location == "body":
                    body_params.append(param)
                else:
                    raw = _READERS[param.location](self.connection, param)
                    self.store(param, raw, (param.location, param.key), errors)
        if body_params:
            await self.convert_body(body_params, errors)
        if errors:
            raise self.validation_error(errors)

    def store(
        self, param: ValueParam, raw: Any, loc: tuple[str | int, ...], errors: list[dict[str, Any]]
    ) -> None:
        """Convert ``raw`` for ``param`` (or take its default) into ``self.values``, or record why not."""
        if raw is _MISSING or (param.many and not raw):
            if param.required:
                errors.append(error("missing", "field required", None, loc))
            else:
                # A mutable default must not be shared between connections.
                default = param.default
                self.values[param] = (
                    copy.deepcopy(default) if isinstance(default, list | dict | set) else default
                )
            return
        try:
            self.values[param] = param.convert(raw)
        except Invalid as exc:
            errors.extend(prefixed(exc.errors, loc))

    async def convert_body(self, params: list[ValueParam], errors: list[dict[str, Any]]) -> None:
        """Read the JSON body once and hand it (or its members) to the body parameters."""
        if not isinstance(self.connection, Request):
            raise TypeError(
                f"body parameters need a Request with a body, got {type(self.connection).__name__}"
            )
        payload: Any = _MISSING
        body = await self.connection.body()
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                text = body.decode("utf-8", "replace")
                errors.append(error("json_invalid", "request body is not valid JSON", text, ("body",)))
                return
        # One body parameter takes the whole body, as in FastAPI; several (or
        # ``embed=True``) each take their member of a JSON object.
        if len(params) == 1 and not params[0].embed:
            self.store(params[0], payload, ("body",), errors)
            return
        if payload is not _MISSING and not isinstance(payload, dict):
            errors.append(error("dict_type", "request body is not a JSON object", payload, ("body",)))
            return
        for param in params:
            member = _MISSING if payload is _MISSING else payload.get(param.key, _MISSING)
            self.store(param, member, ("body", param.key), errors)

    def validation_error(self, errors: list[dict[str, Any]]) -> ValidationError:
        """The validation error type that fits the route's kind."""
        if self.plan.kind == "websocket":
            return WebSocketRequestValidationError(errors)
        return RequestValidationError(errors)

    # -- phase 2: calls ----------------------------------------------------------

    async def arguments(self, node: DependantPlan, scopes: tuple[str, ...]) -> dict[str, Any]:
        """The keyword arguments for ``node``'s callable, running its dependencies first."""
        kwargs = {param.name: self.values[param] for param in node.values}
        for name in node.connections:
            kwargs[name] = self.connection
        if node.security_scopes:
            security_scopes = SecurityScopes(scopes)
            for name in node.security_scopes:
                kwargs[name] = security_scopes
        for dependency in node.dependencies:
            value = await self.run(dependency, scopes)
            if dependency.name is not None:
                kwargs[dependency.name] = value
        return kwargs

    async def run(self, dependency: DependencyParam, parent_scopes: tuple[str, ...]) -> Any:
        """The value of one dependency for this connection: cached, or computed now."""
        scopes = parent_scopes + tuple(s for s in dependency.scopes if s not in parent_scopes)
        node = self.resolve(dependency)
        key: Hashable = (node.cache_identity, tuple(sorted(scopes)))
        if dependency.use_cache and key in self.cache:
            return self.cache[key]
        value = await self.invoke(node, await self.arguments(node, scopes))
        # Stored even when this use opted out, so later cached uses share it (as FastAPI does).
        self.cache.setdefault(key, value)
        return value

    async def invoke(self, node: DependantPlan, kwargs: dict[str, Any]) -> Any:
        """Call ``node``'s callable the way the analysis decided."""
        if node.invocation is Invocation.ASYNC:
            return await node.function(**kwargs)
        if node.invocation is Invocation.CONTEXT_MANAGER:
            return await self.stack.enter_async_context(node.function(**kwargs))
        result = node.function(**kwargs)
        if isinstance(result, Coroutine):
            result.close()
            raise TypeError(
                f"dependency {node.call!r} returned a coroutine but does not look like a coroutine "
                "function; declare it 'async def' (or keep functools.wraps on its decorator)"
            )
        return result


def _read_query(connection: HTTPConnection, param: ValueParam) -> Any:
    if param.many:
        return connection.query_params.getlist(param.key)
    return connection.query_params.get(param.key, _MISSING)


def _read_header(connection: HTTPConnection, param: ValueParam) -> Any:
    if param.many:
        return connection.headers.getlist(param.key)
    value = connection.headers.get(param.key)
    return _MISSING if value is None else value


def _read_cookie(connection: HTTPConnection, param: ValueParam) -> Any:
    return connection.cookies.get(param.key, _MISSING)


def _read_path(connection: HTTPConnection, param: ValueParam) -> Any:
    return connection.path_params.get(param.key, _MISSING)


_READERS: dict[str, Callable[[HTTPConnection, ValueParam], Any]] = {
    "query": _read_query,
    "header": _read_header,
    "cookie": _read_cookie,
    "path": _read_path,
}
