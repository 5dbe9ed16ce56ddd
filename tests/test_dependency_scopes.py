"""``Depends(..., scope="function" | "request")``: when a ``yield`` dependency is torn down.

As in FastAPI 0.121+: ``"function"`` teardown runs as soon as the endpoint
function returns, ``"request"`` (the default for ``yield`` dependencies) once the
request is over. For HTTP that is after the response is sent; for a WebSocket,
after the final close frame is sent and the connection's tasks have ended.

No ``from __future__ import annotations``: the dependencies are defined inside
the tests and annotated with local names, which only eager annotations can see.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest
import trio
from handshakes import plan_for, solve
from servers import KINDS, running_server
from trio_websocket import ConnectionClosed, open_websocket_url

from trioapi import Depends, Security, TrioAPI, WebSocket, WebSocketException
from trioapi._types import Message
from trioapi.dependencies.solving import dependency_exit_stack
from trioapi.exceptions import RouteDefinitionError
from trioapi.testing import TestClient, WebSocketRejected

BOUND = 5.0


def scoped_pair(log: list[str], release: trio.Event | None = None) -> tuple[Any, Any]:
    """A request-scoped and a function-scoped ``yield`` dependency that log their life.

    With ``release``, the request-scoped teardown waits for it: if that teardown
    ran too early, whatever the test awaits before setting it never comes.
    """

    async def per_request() -> AsyncIterator[str]:
        log.append("request setup")
        try:
            yield "request"
        finally:
            if release is not None:
                with trio.fail_after(BOUND):
                    await release.wait()
            log.append("request teardown")

    async def per_function() -> AsyncIterator[str]:
        log.append("function setup")
        try:
            yield "function"
        finally:
            log.append("function teardown")

    return per_request, per_function


# -- declaring scopes ----------------------------------------------------------------------------


def test_scope_must_be_function_request_or_none() -> None:
    async def dep() -> None:
        pass

    with pytest.raises(ValueError, match='"function", "request"'):
        Depends(dep, scope="connection")  # type: ignore[arg-type]


def test_security_takes_no_scope_as_in_fastapi() -> None:
    async def dep() -> None:
        pass

    with pytest.raises(TypeError, match="scope"):
        Security(dep, scope="function")  # type: ignore[call-arg]


def test_a_request_scoped_yield_dependency_cannot_depend_on_a_function_scoped_one() -> None:
    async def short() -> AsyncIterator[None]:
        yield

    async def long(s: Annotated[None, Depends(short, scope="function")]) -> AsyncIterator[None]:
        yield

    async def endpoint(x: Annotated[None, Depends(long)]) -> None:
        pass

    refusal = r'"long" has a scope of "request", it cannot depend on .*short'
    with pytest.raises(RouteDefinitionError, match=refusal):
        plan_for(endpoint)


def test_a_function_scoped_yield_dependency_may_depend_on_a_request_scoped_one() -> None:
    async def long() -> AsyncIterator[None]:
        yield

    async def short(s: Annotated[None, Depends(long)]) -> AsyncIterator[None]:
        yield

    async def endpoint(x: Annotated[None, Depends(short, scope="function")]) -> None:
        pass

    plan_for(endpoint)


def test_a_plain_dependency_under_a_function_scoped_one_is_allowed() -> None:
    """The rule is about teardown order: a plain function has none to get wrong."""

    async def short() -> AsyncIterator[None]:
        yield

    def plain(s: Annotated[None, Depends(short, scope="function")]) -> None:
        pass

    async def endpoint(x: Annotated[None, Depends(plain)]) -> None:
        pass

    plan_for(endpoint)


# -- the stack -----------------------------------------------------------------------------------


async def test_function_part_closes_at_the_end_of_its_block_and_request_part_with_the_stack() -> None:
    log: list[str] = []
    per_request, per_function = scoped_pair(log)

    async def endpoint(
        r: Annotated[str, Depends(per_request)], f: Annotated[str, Depends(per_function, scope="function")]
    ) -> None:
        pass

    async with dependency_exit_stack() as stack:
        async with stack.function_scope():
            await solve(endpoint, stack=stack)
            log.append("endpoint")
        log.append("response sent")
    assert log == [
        "request setup",
        "function setup",
        "endpoint",
        "function teardown",
        "response sent",
        "request teardown",
    ]


async def test_closing_the_stack_alone_closes_the_function_part_first() -> None:
    log: list[str] = []
    per_request, per_function = scoped_pair(log)

    async def endpoint(
        f: Annotated[str, Depends(per_function, scope="function")], r: Annotated[str, Depends(per_request)]
    ) -> None:
        pass

    async with dependency_exit_stack() as stack:
        await solve(endpoint, stack=stack)
    assert log == ["function setup", "request setup", "function teardown", "request teardown"]


async def test_the_request_part_sees_the_exception_that_left_the_function_part() -> None:
    seen: list[str] = []

    async def per_request() -> AsyncIterator[None]:
        try:
            yield
        except LookupError as exc:
            seen.append(f"request saw {exc!r}")
            raise

    async def per_function() -> AsyncIterator[None]:
        try:
            yield
        except LookupError as exc:
            seen.append(f"function saw {exc!r}")
            raise

    async def endpoint(
        r: Annotated[None, Depends(per_request)], f: Annotated[None, Depends(per_function, scope="function")]
    ) -> None:
        pass

    async with dependency_exit_stack() as stack:
        with pytest.raises(KeyError):
            async with stack.function_scope():
                await solve(endpoint, stack=stack)
                raise KeyError("gone")
        # The runner answers the error here (a close frame, an error response) ...
    assert seen == ["function saw KeyError('gone')", "request saw KeyError('gone')"]


async def test_one_generator_used_with_both_scopes_is_entered_once_per_scope() -> None:
    entered: list[int] = []

    async def resource() -> AsyncIterator[int]:
        entered.append(1)
        yield len(entered)

    async def endpoint(
        a: Annotated[int, Depends(resource)],
        b: Annotated[int, Depends(resource, scope="function")],
        c: Annotated[int, Depends(resource, scope="function")],
    ) -> None:
        pass

    assert await solve(endpoint) == {"a": 1, "b": 2, "c": 2}


async def test_an_override_is_torn_down_with_the_scope_of_the_dependency_it_replaces() -> None:
    log: list[str] = []

    def real() -> Iterator[None]:
        yield

    def replacement() -> Iterator[None]:
        try:
            yield
        finally:
            log.append("replacement teardown")

    async def endpoint(x: Annotated[None, Depends(real, scope="function")]) -> None:
        pass

    async with dependency_exit_stack() as stack:
        async with stack.function_scope():
            await solve(endpoint, stack=stack, overrides={real: replacement})
        log.append("after the function scope")
    assert log == ["replacement teardown", "after the function scope"]


# -- WebSocket routes ----------------------------------------------------------------------------


def ordering_app(log: list[str], release: trio.Event) -> TrioAPI:
    per_request, per_function = scoped_pair(log, release)
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(
        websocket: WebSocket,
        r: Annotated[str, Depends(per_request)],
        f: Annotated[str, Depends(per_function, scope="function")],
    ) -> None:
        await websocket.accept()
        await websocket.send_text(f"{r} {f}")
        log.append("handler returns")

    return app


async def test_websocket_function_scoped_teardown_runs_before_the_final_close_frame() -> None:
    log: list[str] = []
    release = trio.Event()
    async with TestClient(ordering_app(log, release)) as client:
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_text() == "request function"
            assert await ws.wait_closed() == (1000, "")
            assert log[-2:] == ["handler returns", "function teardown"]
            release.set()


async def test_websocket_request_scoped_teardown_runs_after_the_final_close_frame() -> None:
    log: list[str] = []
    release = trio.Event()
    async with TestClient(ordering_app(log, release)) as client:
        async with client.websocket_connect("/ws") as ws:
            # The close frame arrives while the request-scoped teardown is held back.
            assert await ws.wait_closed() == (1000, "")
            assert "request teardown" not in log
            release.set()
    assert log == [
        "request setup",
        "function setup",
        "handler returns",
        "function teardown",
        "request teardown",
    ]


async def test_websocket_request_scoped_teardown_waits_for_the_connections_tasks() -> None:
    log: list[str] = []
    app = TrioAPI()

    async def session() -> AsyncIterator[str]:
        try:
            yield "session"
        finally:
            log.append("session closed")

    async def use(session: str) -> None:
        try:
            await trio.sleep_forever()
        finally:
            log.append(f"task done with {session}")

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, s: Annotated[str, Depends(session)]) -> None:
        await websocket.accept()
        websocket.start_soon(use, s)
        await websocket.receive_text()

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as ws:
            await ws.send_text("bye")
    assert log == ["task done with session", "session closed"]


async def test_websocket_refused_by_a_dependency_tears_down_function_scope_before_the_close() -> None:
    states: list[str] = []
    app = TrioAPI()

    async def per_request(websocket: WebSocket) -> AsyncIterator[None]:
        try:
            yield
        finally:
            states.append(f"request teardown after {websocket.application_state.name}")

    async def per_function(websocket: WebSocket) -> AsyncIterator[None]:
        try:
            yield
        finally:
            states.append(f"function teardown while {websocket.application_state.name}")

    async def refuse(
        r: Annotated[None, Depends(per_request)], f: Annotated[None, Depends(per_function, scope="function")]
    ) -> None:
        raise WebSocketException(4403, "forbidden")

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, x: Annotated[None, Depends(refuse)]) -> None:
        states.append("handler")  # never reached

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as refused:
            async with client.websocket_connect("/ws"):
                pass
    assert refused.value.code == 4403
    assert states == ["function teardown while CONNECTING", "request teardown after DISCONNECTED"]


# -- HTTP routes ---------------------------------------------------------------------------------


async def test_http_function_scope_ends_before_the_response_and_request_scope_after_it() -> None:
    log: list[str] = []
    per_request, per_function = scoped_pair(log)
    app = TrioAPI()

    @app.get("/item")
    async def item(
        r: Annotated[str, Depends(per_request)], f: Annotated[str, Depends(per_function, scope="function")]
    ) -> dict[str, str]:
        log.append("endpoint")
        return {"r": r, "f": f}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/item",
        "query_string": b"",
        "headers": [],
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        log.append(message["type"])

    await app(scope, receive, send)
    assert log == [
        "request setup",
        "function setup",
        "endpoint",
        "function teardown",
        "http.response.start",
        "http.response.body",
        "request teardown",
    ]


# -- on a live server ----------------------------------------------------------------------------


async def _session_log(server: Any) -> list[str]:
    async with open_websocket_url(server.url("/log")) as ws:
        return list((await ws.get_message()).split(","))


@pytest.mark.parametrize("kind", KINDS)
async def test_teardown_order_on_a_live_server(kind: str) -> None:
    with running_server(kind, "apps.dependency_scopes_app:app", env={"PYTHONPATH": "tests"}) as server:
        with trio.fail_after(20):
            async with open_websocket_url(server.url("/ws")) as ws:
                assert await ws.get_message() == "hello"
                # The final close frame comes while the request-scoped teardown
                # (a sync generator, in a worker thread) waits to be released.
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason.code == 1000
            assert await _session_log(server) == [
                "request setup",
                "function setup",
                "handler returns",
                "function teardown",
            ]
            async with open_websocket_url(server.url("/release")) as ws:
                assert await ws.get_message() == "released"
            for _ in range(200):  # the teardown thread finishes soon after the release
                log = await _session_log(server)
                if log[-1] == "request teardown":
                    break
                await trio.sleep(0.05)
            assert log == [
                "request setup",
                "function setup",
                "handler returns",
                "function teardown",
                "request teardown",
            ]
