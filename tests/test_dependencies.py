"""Dependencies: how they are called, cached, overridden, and torn down.

No ``from __future__ import annotations``: the dependencies are defined inside
the tests and annotated with local names, which only eager annotations can see.
"""

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest
import trio
import trio.lowlevel
from handshakes import plan_for, request_for, solve, websocket_for

from examples import dependency_overrides, yield_dependency
from trioapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Security,
    TrioAPI,
    WebSocket,
    WebSocketDisconnect,
)
from trioapi.dependencies.solving import dependency_exit_stack, solve_dependencies
from trioapi.exceptions import RouteDefinitionError, WebSocketRequestValidationError
from trioapi.requests import HTTPConnection, Request
from trioapi.security import SecurityScopes
from trioapi.testing import TestClient, WebSocketRejected

# -- the shapes a dependency may have ----------------------------------------------------------


async def test_plain_function_is_called() -> None:
    def dep() -> str:
        return "plain"

    async def endpoint(value: str = Depends(dep)) -> None:
        pass

    assert await solve(endpoint) == {"value": "plain"}


async def test_coroutine_function_is_awaited() -> None:
    async def dep() -> str:
        await trio.lowlevel.checkpoint()
        return "awaited"

    async def endpoint(value: Annotated[str, Depends(dep)]) -> None:
        pass

    assert await solve(endpoint) == {"value": "awaited"}


async def test_async_generator_is_entered_on_the_stack() -> None:
    events: list[str] = []

    async def dep() -> AsyncIterator[str]:
        events.append("setup")
        yield "resource"
        events.append("teardown")

    async def endpoint(value: str = Depends(dep)) -> None:
        pass

    async with dependency_exit_stack() as stack:
        assert await solve(endpoint, stack=stack) == {"value": "resource"}
        assert events == ["setup"]
    assert events == ["setup", "teardown"]


async def test_callable_returning_an_async_context_manager_is_entered() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def decorated() -> AsyncIterator[str]:
        events.append("decorated in")
        yield "from decorated"
        events.append("decorated out")

    class Resource:
        async def __aenter__(self) -> str:
            events.append("class in")
            return "from class"

        async def __aexit__(self, *exc_info: object) -> None:
            events.append("class out")

    async def endpoint(a: str = Depends(decorated), b: str = Depends(Resource)) -> None:
        pass

    async with dependency_exit_stack() as stack:
        assert await solve(endpoint, stack=stack) == {"a": "from decorated", "b": "from class"}
    assert events == ["decorated in", "class in", "class out", "decorated out"]


async def test_callable_instance_with_async_call_is_awaited() -> None:
    class Prefixer:
        def __init__(self, prefix: str) -> None:
            self.prefix = prefix

        async def __call__(self, name: str = Query()) -> str:
            return self.prefix + name

    async def endpoint(greeting: str = Depends(Prefixer("hi "))) -> None:
        pass

    assert await solve(endpoint, "/ws?name=ann") == {"greeting": "hi ann"}


async def test_depends_without_callable_calls_the_annotation() -> None:
    class Pagination:
        def __init__(self, page: int = 1, size: int = 10) -> None:
            self.page, self.size = page, size

    async def endpoint(paging: Pagination = Depends()) -> None:
        pass

    paging = (await solve(endpoint, "/ws?page=3"))["paging"]
    assert (paging.page, paging.size) == (3, 10)


async def test_partial_of_a_coroutine_function_is_awaited() -> None:
    async def dep(suffix: str) -> str:
        return "x" + suffix

    async def endpoint(value: str = Depends(functools.partial(dep, suffix="!"))) -> None:
        pass

    assert await solve(endpoint) == {"value": "x!"}


async def test_sync_dependency_that_returns_a_coroutine_is_a_clear_error() -> None:
    async def real() -> int:
        return 1

    def undecorated() -> Any:  # a decorator that lost functools.wraps
        return real()

    async def endpoint(value: int = Depends(undecorated)) -> None:
        pass

    with pytest.raises(TypeError, match="declare it 'async def'"):
        await solve(endpoint)


# -- refused when the route is declared -------------------------------------------------------


def test_depends_with_nothing_to_call_is_refused() -> None:
    async def endpoint(value: str = Depends()) -> None:
        pass

    with pytest.raises(RouteDefinitionError, match="has no dependency"):
        plan_for(endpoint)


def test_security_with_nothing_to_call_is_refused() -> None:
    async def endpoint(value: Annotated[int, Security(scopes=["a"])]) -> None:
        pass

    with pytest.raises(RouteDefinitionError, match=r"Security\(\) has no dependency"):
        plan_for(endpoint)


def test_nested_dependency_problem_names_the_dependency() -> None:
    def inner(request: Request) -> None:
        pass

    async def endpoint(value: Annotated[None, Depends(inner)]) -> None:
        pass

    with pytest.raises(RouteDefinitionError, match=r"parameter 'request' of dependency .*inner"):
        plan_for(endpoint)


# -- nesting, the connection, caching -------------------------------------------------------------


async def test_nested_dependencies_receive_connection_and_parameters() -> None:
    def user_id(connection: HTTPConnection, uid: int = Query()) -> tuple[str, int]:
        return connection.url.path, uid

    async def user(found: tuple[str, int] = Depends(user_id)) -> str:
        return f"{found[0]}:{found[1]}"

    async def endpoint(websocket: WebSocket, who: str = Depends(user)) -> None:
        pass

    assert (await solve(endpoint, "/ws?uid=5"))["who"] == "/ws:5"


async def test_http_connection_dependency_serves_http_routes_too() -> None:
    def path_of(connection: HTTPConnection) -> str:
        return connection.url.path

    async def endpoint(where: str = Depends(path_of)) -> None:
        pass

    plan = plan_for(endpoint, kind="http")
    async with dependency_exit_stack() as stack:
        got = await solve_dependencies(plan, request_for("/items"), stack=stack, overrides={})
    assert got == {"where": "/items"}


async def test_dependency_is_called_once_per_connection_unless_use_cache_is_false() -> None:
    calls = 0

    def counter() -> int:
        nonlocal calls
        calls += 1
        return calls

    def first(n: int = Depends(counter)) -> int:
        return n

    def second(n: int = Depends(counter)) -> int:
        return n

    def fresh(n: int = Depends(counter, use_cache=False)) -> int:
        return n

    async def endpoint(a: int = Depends(first), b: int = Depends(second), c: int = Depends(fresh)) -> None:
        pass

    assert await solve(endpoint) == {"a": 1, "b": 1, "c": 2}
    assert await solve(endpoint) == {"a": 3, "b": 3, "c": 4}  # a new connection, a new cache


async def test_route_dependencies_run_first_for_their_side_effects() -> None:
    order: list[str] = []

    def audit() -> str:
        order.append("route dependency")
        return "ignored"

    def own() -> str:
        order.append("endpoint dependency")
        return "own"

    async def endpoint(value: str = Depends(own)) -> None:
        pass

    assert await solve(endpoint, dependencies=[Depends(audit)]) == {"value": "own"}
    assert order == ["route dependency", "endpoint dependency"]


async def test_invalid_parameters_are_reported_before_any_dependency_runs() -> None:
    called: list[str] = []

    async def opens_resource(limit: int = Query()) -> int:
        called.append("opened")
        return limit

    async def endpoint(n: int = Depends(opens_resource), room: str = Query()) -> None:
        pass

    with pytest.raises(WebSocketRequestValidationError) as info:
        await solve(endpoint, "/ws?limit=x")
    assert [e["loc"] for e in info.value.errors()] == [("query", "room"), ("query", "limit")]
    assert called == []


# -- security scopes ---------------------------------------------------------------------------


async def test_security_scopes_accumulate_down_the_chain() -> None:
    def scopes_seen(security_scopes: SecurityScopes) -> str:
        return security_scopes.scope_str

    def items_reader(seen: str = Security(scopes_seen, scopes=["items:read"])) -> str:
        return seen

    async def endpoint(
        seen: str = Security(items_reader, scopes=["me"]), plain: str = Depends(scopes_seen)
    ) -> None:
        pass

    assert await solve(endpoint) == {"seen": "me items:read", "plain": ""}


# -- overrides ------------------------------------------------------------------------------------


async def test_override_replaces_a_nested_dependency_and_its_plan_is_reused() -> None:
    def database() -> str:
        return "real"

    def repository(db: str = Depends(database)) -> str:
        return f"repo({db})"

    async def endpoint(repo: str = Depends(repository)) -> None:
        pass

    def fake_database(flavour: str = Query("fake")) -> str:
        return flavour

    plan = plan_for(endpoint)
    overrides = {database: fake_database}
    for target, expected in (("/ws", "repo(fake)"), ("/ws?flavour=mock", "repo(mock)")):
        async with dependency_exit_stack() as stack:
            got = await solve_dependencies(plan, websocket_for(target), stack=stack, overrides=overrides)
        assert got == {"repo": expected}
    assert list(plan.override_plans) == [fake_database]
    async with dependency_exit_stack() as stack:
        got = await solve_dependencies(plan, websocket_for("/ws"), stack=stack, overrides={})
    assert got == {"repo": "repo(real)"}


async def test_override_of_a_route_dependency_is_honoured() -> None:
    def guard() -> None:
        raise HTTPException(403)

    async def endpoint() -> None:
        pass

    assert await solve(endpoint, dependencies=[Depends(guard)], overrides={guard: lambda: None}) == {}


# -- teardown -------------------------------------------------------------------------------------


def recording_dependencies(events: list[str]) -> Any:
    """An endpoint with two yield dependencies (``outer`` needed by ``inner``) that record everything."""

    async def outer() -> AsyncIterator[str]:
        events.append("outer setup")
        try:
            yield "outer"
        except BaseException as exc:
            events.append(f"outer saw {type(exc).__name__}")
            raise
        finally:
            await trio.lowlevel.checkpoint()  # teardown may await, even when cancelled
            events.append("outer teardown")

    async def inner(o: str = Depends(outer)) -> AsyncIterator[str]:
        events.append("inner setup")
        try:
            yield "inner"
        except BaseException as exc:
            events.append(f"inner saw {type(exc).__name__}")
            raise
        finally:
            await trio.lowlevel.checkpoint()
            events.append("inner teardown")

    async def endpoint(i: str = Depends(inner)) -> None:
        pass

    return endpoint


async def test_teardown_runs_once_in_reverse_order_after_return() -> None:
    events: list[str] = []
    async with dependency_exit_stack() as stack:
        await solve(recording_dependencies(events), stack=stack)
        events.append("handler")
    assert events == ["outer setup", "inner setup", "handler", "inner teardown", "outer teardown"]


async def test_teardown_receives_the_exception_that_ended_the_handler() -> None:
    events: list[str] = []
    with pytest.raises(ValueError, match="boom"):
        async with dependency_exit_stack() as stack:
            await solve(recording_dependencies(events), stack=stack)
            raise ValueError("boom")
    assert events == [
        "outer setup",
        "inner setup",
        "inner saw ValueError",
        "inner teardown",
        "outer saw ValueError",
        "outer teardown",
    ]


async def test_teardown_runs_shielded_when_the_handler_is_cancelled() -> None:
    events: list[str] = []
    with trio.CancelScope() as scope:
        async with dependency_exit_stack() as stack:
            await solve(recording_dependencies(events), stack=stack)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert events == [
        "outer setup",
        "inner setup",
        "inner saw Cancelled",
        "inner teardown",
        "outer saw Cancelled",
        "outer teardown",
    ]


async def test_a_failing_dependency_tears_down_those_entered_before_it() -> None:
    events: list[str] = []

    async def resource() -> AsyncIterator[None]:
        events.append("setup")
        try:
            yield
        finally:
            events.append("teardown")

    def refuse(r: Annotated[None, Depends(resource)]) -> None:
        raise HTTPException(401, "no")

    async def endpoint(x: Annotated[None, Depends(refuse)]) -> None:
        events.append("endpoint")  # never reached

    with pytest.raises(HTTPException):
        async with dependency_exit_stack() as stack:
            await solve(endpoint, stack=stack)
    assert events == ["setup", "teardown"]


async def test_teardown_is_bounded_in_time(autojump_clock: trio.testing.MockClock) -> None:
    events: list[str] = []

    async def first() -> AsyncIterator[None]:
        try:
            yield
        except trio.Cancelled:
            # Past the budget, teardowns still run (once) but are cancelled at their first await.
            events.append("first saw the budget run out")
            raise

    async def stuck() -> AsyncIterator[None]:
        yield
        events.append("stuck teardown starts")
        await trio.sleep_forever()

    async def endpoint(a: Annotated[None, Depends(first)], b: Annotated[None, Depends(stuck)]) -> None:
        pass

    start = trio.current_time()
    async with dependency_exit_stack(timeout=2.0) as stack:
        await solve(endpoint, stack=stack)
    assert trio.current_time() - start == pytest.approx(2.0)
    assert events == ["stuck teardown starts", "first saw the budget run out"]


async def test_teardown_timeout_is_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def stuck() -> AsyncIterator[None]:
        yield
        await trio.sleep_forever()

    async def endpoint(b: Annotated[None, Depends(stuck)]) -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="trioapi.dependencies"):
        async with dependency_exit_stack(timeout=1.0) as stack:
            await solve(endpoint, stack=stack)
    assert "took longer than 1.0 s" in caplog.text


async def test_a_dependency_may_suppress_an_exception_but_never_a_cancellation() -> None:
    async def swallow() -> AsyncIterator[None]:
        with contextlib.suppress(BaseException):  # deliberately wrong: swallows everything
            yield

    async def endpoint(x: Annotated[None, Depends(swallow)]) -> None:
        pass

    async with dependency_exit_stack() as stack:
        await solve(endpoint, stack=stack)
        raise ValueError("suppressed by the dependency")

    with trio.CancelScope() as scope:
        async with dependency_exit_stack() as stack:
            await solve(endpoint, stack=stack)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught


# -- through the app ---------------------------------------------------------------------------------


async def test_teardown_after_client_disconnect_sees_websocket_disconnect() -> None:
    events: list[str] = []
    app = TrioAPI()
    teardown_done = trio.Event()

    async def session() -> AsyncIterator[str]:
        events.append("setup")
        try:
            yield "session"
        except WebSocketDisconnect as exc:
            events.append(f"dependency saw disconnect {exc.code}")
            raise
        finally:
            events.append("teardown")
            teardown_done.set()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, s: str = Depends(session)) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        finally:
            events.append("handler finally")

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as ws:
            await ws.close(4000)
        with trio.fail_after(5):
            await teardown_done.wait()
    assert events == ["setup", "handler finally", "dependency saw disconnect 4000", "teardown"]


async def test_app_dependency_overrides_are_used_for_new_connections() -> None:
    app = TrioAPI()

    def current_user() -> str:
        return "real user"

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, user: str = Depends(current_user)) -> None:
        await websocket.accept()
        await websocket.send_text(user)
        await websocket.close()

    app.dependency_overrides[current_user] = lambda: "test user"
    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_text() == "test user"
        app.dependency_overrides.clear()
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_text() == "real user"


async def test_invalid_parameter_closes_1008_before_accept_naming_it() -> None:
    app = TrioAPI()
    ran: list[bool] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, user_id: int = Query()) -> None:
        ran.append(True)

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws?user_id=abc"):
                pass
    assert info.value.code == 1008
    assert info.value.reason == "query.user_id: value is not a valid integer"
    assert ran == []


async def test_invalid_http_parameter_is_a_422_listing_the_fields() -> None:
    app = TrioAPI()

    @app.get("/items")
    async def items(limit: int = Query(gt=0), q: str = Query()) -> dict[str, Any]:
        return {"limit": limit, "q": q}

    async with TestClient(app) as client:
        assert (await client.get("/items?limit=2&q=a")).json() == {"limit": 2, "q": "a"}
        response = await client.get("/items?limit=0")
    assert response.status_code == 422
    assert [(e["loc"], e["msg"]) for e in response.json()["detail"]] == [
        (["query", "limit"], "value must be greater than 0"),
        (["query", "q"], "field required"),
    ]


async def test_app_router_and_route_dependencies_run_outermost_first() -> None:
    order: list[str] = []

    def mark(name: str) -> Any:
        def dependency() -> None:
            order.append(name)

        return Depends(dependency)

    app = TrioAPI(dependencies=[mark("app")])
    router = APIRouter(dependencies=[mark("router")])

    @router.websocket("/ws", dependencies=[mark("route")])
    async def endpoint(websocket: WebSocket, x: Annotated[None, mark("endpoint")]) -> None:
        await websocket.accept()
        await websocket.close()

    app.include_router(router, prefix="/r", dependencies=[mark("include")])
    async with TestClient(app) as client, client.websocket_connect("/r/ws") as ws:
        await ws.wait_closed()
    assert order == ["app", "include", "router", "route", "endpoint"]


# -- the dependencies guide's example ------------------------------------------------------------


async def test_yield_dependency_example_holds_one_database_for_the_connection() -> None:
    yield_dependency.Database.log.clear()
    async with TestClient(yield_dependency.app) as client:
        async with client.websocket_connect("/rooms?room=lobby") as ws:
            assert await ws.receive_text() == "welcome to lobby"
            await ws.send_text("hi")
            assert await ws.receive_text() == "echo: hi"
            assert yield_dependency.Database.log == ["opened"]
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/rooms?room=Not%20Valid"):
                pass
        assert info.value.reason == "query.room: value does not match the pattern '^[a-z0-9-]+$'"
    assert yield_dependency.Database.log == ["opened", "closed"]


async def test_dependency_overrides_example() -> None:
    await dependency_overrides.room_with_fake_database()
    assert yield_dependency.app.dependency_overrides == {}


async def test_an_endpoint_taking_only_the_connection_is_solved_without_walking_a_plan() -> None:
    async def bare(websocket: WebSocket, conn: HTTPConnection) -> None: ...

    async def with_query(websocket: WebSocket, q: str = Query("x")) -> None: ...

    async def guard() -> None: ...

    assert plan_for(bare).connection_only == ("websocket", "conn")
    assert plan_for(with_query).connection_only is None
    assert plan_for(bare, dependencies=[Depends(guard)]).connection_only is None
    arguments = await solve(bare)
    assert set(arguments) == {"websocket", "conn"}
    assert arguments["websocket"] is arguments["conn"]
    assert isinstance(arguments["websocket"], WebSocket)
