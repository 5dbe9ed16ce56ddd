"""Fill in an endpoint's arguments for one connection by walking its ``EndpointPlan``.

Solving runs in two phases:

1. Read and convert every parameter of the endpoint and of every dependency
   (following ``dependency_overrides``). Nothing is called yet, so an invalid
   request is refused with all its errors at once, and no dependency has
   opened a resource it would then have to release.
2. Call the dependencies depth first, in declaration order: route-level
   ``dependencies=[...]`` first, then the endpoint's own. Each result is cached
   for the connection by ``(callable, scopes, teardown scope)`` unless
   ``use_cache=False``; context managers (and generators) are entered on the
   exit stack. Sync callables, and sync context managers' setup and teardown,
   run in worker threads.

``dependency_exit_stack`` is that stack: it closes every entered context
manager exactly once, in reverse order, ``"function"``-scoped ones when the
endpoint returns and ``"request"``-scoped ones when the request is over,
shielded from cancellation and bounded in time, and throws the exception that
ended the handler into each of them.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections.abc import Callable, Coroutine, Hashable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager, AsyncExitStack
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
from trioapi.params import DependencyScope
from trioapi.requests import HTTPConnection, Request
from trioapi.security.oauth2 import SecurityScopes

__all__ = [
    "NO_DEPENDENCIES",
    "DependencyExitStack",
    "NoDependencies",
    "dependency_exit_stack",
    "solve_dependencies",
]

logger = logging.getLogger("trioapi.dependencies")

_MISSING: Any = object()

T = TypeVar("T")


async def solve_dependencies(
    plan: EndpointPlan,
    connection: HTTPConnection,
    *,
    stack: DependencyExitStack,
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

    Two parts, after FastAPI's ``Depends(scope=...)``: what ``"function"``-scoped
    dependencies entered is closed when the block of ``function_scope()`` ends
    (the runner wraps the endpoint call in it); what ``"request"``-scoped ones
    entered (the default) is closed when the stack itself is closed, by
    ``async with`` or ``aclose()``, which the runner does once the request is
    over (the response sent, the final close frame sent). Closing the stack also
    closes the function part if ``function_scope()`` was not used.

    Each part's teardown runs however its block ended: return, exception,
    disconnect, or cancellation (server shutdown). It is shielded so the code
    after a dependency's ``yield`` can still await (close a database session,
    say) while the connection is being cancelled; ``timeout`` bounds each part,
    after which what is still running is cancelled and a warning logged; the
    teardowns not reached yet still run, once each, but with ``trio.Cancelled``
    thrown in, so only their non-blocking cleanup (``finally``) completes (a
    sync one is then started in a worker thread that is not waited for). As with
    ``contextlib.AsyncExitStack``, the exception that ended the block is thrown
    into each context manager (code after a bare ``yield`` runs only on
    success: use ``try``/``finally``); the request part gets the exception that
    left the function part, if the request's own end had none. A context
    manager may suppress an ``Exception``, never a cancellation or a
    ``BaseException``.

    The underlying ``AsyncExitStack`` of each part is made on the first context
    entered into it: most WebSocket endpoints enter none, and every idle
    connection holds this object.
    """

    __slots__ = ("_escaped", "_function", "_function_closed", "_request", "_timeout")

    def __init__(self, timeout: float = 5.0) -> None:
        self._request: AsyncExitStack | None = None
        self._function: AsyncExitStack | None = None
        self._function_closed = False
        # What left the function part (the endpoint's exception, or one its
        # teardown raised), thrown into the request part in turn.
        self._escaped: BaseException | None = None
        self._timeout = timeout

    def _part(self, scope: DependencyScope) -> AsyncExitStack:
        if scope == "function":
            if self._function_closed:
                raise RuntimeError("the function scope of this DependencyExitStack has already been closed")
            if self._function is None:
                self._function = AsyncExitStack()
            return self._function
        if self._request is None:
            self._request = AsyncExitStack()
        return self._request

    async def enter_async_context(
        self, manager: AbstractAsyncContextManager[T], *, scope: DependencyScope = "request"
    ) -> T:
        """Enter ``manager`` now; it exits with the others of its ``scope``, in reverse order."""
        return await self._part(scope).enter_async_context(manager)

    async def enter_context_in_thread(
        self, make: Callable[[], AbstractContextManager[T]], *, scope: DependencyScope = "request"
    ) -> T:
        """Make a sync context manager with ``make()`` and enter it, both in a worker thread.

        Its ``__exit__`` runs in a worker thread too, at teardown, so blocking
        setup and teardown (opening and closing a database session) never stall
        the event loop. As in FastAPI, the exit does not wait for a free thread
        of the default limiter, which the dependencies' own work may hold.
        """

        def setup() -> tuple[AbstractContextManager[T], T]:
            manager = make()
            return manager, manager.__enter__()

        # Not abandoned on cancellation: once the thread runs, we wait for it and
        # register the exit, so a context manager that was entered is always exited.
        manager, value = await trio.to_thread.run_sync(setup)
        self._part(scope).push_async_exit(functools.partial(_exit_in_thread, manager))
        return value

    def function_scope(self) -> _FunctionScope:
        """An ``async with`` block at whose end the ``"function"``-scoped part is closed."""
        return _FunctionScope(self)

    async def _close_function_part(self, exc: BaseException | None) -> bool:
        """Close the function part (once) with ``exc``; whether it suppressed ``exc``."""
        if self._function_closed:
            return False
        self._function_closed = True
        suppressed = False
        if self._function is not None:
            try:
                suppressed = await _close(self._function, exc, self._timeout)
            except BaseException as raised:
                self._escaped = raised
                raise
        self._escaped = None if suppressed else exc
        return suppressed and isinstance(exc, Exception)

    async def __aenter__(self) -> DependencyExitStack:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            if await self._close_function_part(exc):
                exc = None
        finally:
            suppressed = False
            thrown = exc if exc is not None else self._escaped
            self._escaped = None  # the traceback holds frames that hold this stack
            if self._request is not None:
                suppressed = await _close(self._request, thrown, self._timeout)
        return suppressed and exc is not None and isinstance(exc, Exception)

    async def aclose(self) -> None:
        """Close what is still open: the function part if need be, then the request part."""
        await self.__aexit__(None, None, None)


class _FunctionScope:
    """The block of ``DependencyExitStack.function_scope()``."""

    __slots__ = ("_stack",)

    def __init__(self, stack: DependencyExitStack) -> None:
        self._stack = stack

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return await self._stack._close_function_part(exc)


class NoDependencies:
    """The exit stack of an endpoint with no dependencies: nothing to enter, nothing to close.

    ``DependencyExitStack``'s interface at no cost, for the connection runner: most
    WebSocket endpoints take the ``WebSocket`` alone.
    """

    __slots__ = ()

    def function_scope(self) -> NoDependencies:
        """This object again: a block at whose end nothing is closed."""
        return self

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return False

    async def aclose(self) -> None:
        """Nothing to close."""


#: The one ``NoDependencies`` there needs to be.
NO_DEPENDENCIES = NoDependencies()


def dependency_exit_stack(timeout: float = 5.0) -> DependencyExitStack:
    # ``timeout`` budgets the teardown only, not the block; fail_after cannot express that.
    """A ``DependencyExitStack`` whose teardown is shielded and bounded by ``timeout`` seconds per scope."""
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


async def _exit_in_thread(
    manager: AbstractContextManager[Any],
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool:
    """Run a sync context manager's ``__exit__`` in a worker thread; whether it suppressed ``exc``."""
    exit_ = functools.partial(manager.__exit__, exc_type, exc, tb)
    if trio.current_effective_deadline() <= trio.current_time():
        # The teardown budget is spent (or the stack is being cancelled): run the
        # exit anyway, exactly once, in a thread nobody waits for.
        trio.lowlevel.start_thread_soon(exit_, _log_abandoned_exit)
        return False
    # A fresh limiter: the exit never waits for a thread of the default limiter.
    # Abandoned if the budget runs out meanwhile; the thread still completes the exit.
    return bool(await trio.to_thread.run_sync(exit_, abandon_on_cancel=True, limiter=trio.CapacityLimiter(1)))


def _log_abandoned_exit(result: Any) -> None:
    """Report how an exit nobody waits for ended (``result`` is the thread's ``outcome``)."""
    try:
        result.unwrap()
    except BaseException:  # runs in the worker thread: nothing else would see it
        logger.exception("Teardown of a sync dependency failed after its time ran out")


class _Solver:
    """The state of solving one plan for one connection."""

    def __init__(
        self,
        plan: EndpointPlan,
        connection: HTTPConnection,
        stack: DependencyExitStack,
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
                return self.plan.plan_for_override(replacement, dependency.teardown)
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
        # A context manager's teardown scope is part of its identity, as in FastAPI:
        # the same generator used with both scopes is entered twice.
        teardown = dependency.teardown if node.enters_context else None
        key: Hashable = (node.cache_identity, tuple(sorted(scopes)), teardown)
        if dependency.use_cache and key in self.cache:
            return self.cache[key]
        value = await self.invoke(node, await self.arguments(node, scopes), dependency.teardown)
        # Stored even when this use opted out, so later cached uses share it (as FastAPI does).
        self.cache.setdefault(key, value)
        return value

    async def invoke(self, node: DependantPlan, kwargs: dict[str, Any], teardown: DependencyScope) -> Any:
        """Call ``node``'s callable the way the analysis decided."""
        invocation = node.invocation
        if invocation is Invocation.ASYNC:
            return await node.function(**kwargs)
        if invocation is Invocation.CONTEXT_MANAGER:
            return await self.stack.enter_async_context(node.function(**kwargs), scope=teardown)
        if invocation is Invocation.SYNC_CONTEXT_MANAGER:
            make = functools.partial(node.function, **kwargs)
            return await self.stack.enter_context_in_thread(make, scope=teardown)

        def call() -> Any:
            result = node.function(**kwargs)
            if isinstance(result, Coroutine):
                result.close()
                raise TypeError(
                    f"dependency {node.call!r} returned a coroutine but does not look like a coroutine "
                    "function; declare it 'async def' (or keep functools.wraps on its decorator)"
                )
            return result

        return await trio.to_thread.run_sync(call)


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
