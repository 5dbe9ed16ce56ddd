"""Plain ``def`` dependencies, sync generators and ``@contextmanager``: run in worker threads.

FastAPI runs every sync dependency, and a sync generator's setup and teardown,
in its thread pool; trioapi does the same with ``trio.to_thread.run_sync``, so
blocking I/O in a dependency never stalls the event loop.

No ``from __future__ import annotations``: the dependencies are defined inside
the tests and annotated with local names, which only eager annotations can see.
"""

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import pytest
import trio
import trio.testing
from handshakes import solve

from examples import sync_dependencies
from trioapi import Depends, TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.dependencies.solving import dependency_exit_stack
from trioapi.testing import TestClient

#: How long a test waits for a thread it unblocks itself; never reached when the code is right.
BOUND = 5.0


async def test_plain_function_runs_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    def dep() -> int:
        return threading.get_ident()

    async def endpoint(thread: Annotated[int, Depends(dep)]) -> None:
        pass

    assert (await solve(endpoint))["thread"] != loop_thread


async def test_a_class_dependency_is_constructed_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    class Session:
        def __init__(self) -> None:
            self.thread = threading.get_ident()

    async def endpoint(session: Session = Depends()) -> None:
        pass

    assert (await solve(endpoint))["session"].thread != loop_thread


async def test_a_blocking_plain_dependency_leaves_the_event_loop_running() -> None:
    unblock = threading.Event()

    def blocking() -> str:
        # Returns only once a Trio task has run: inline, this would deadlock.
        if not unblock.wait(BOUND):
            raise AssertionError("the event loop was stalled while the dependency blocked")
        return "done"

    async def endpoint(value: Annotated[str, Depends(blocking)]) -> None:
        pass

    async def release_soon() -> None:
        await trio.sleep(0.01)
        unblock.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_soon)
        assert await solve(endpoint) == {"value": "done"}


async def test_sync_generator_setup_and_teardown_run_in_worker_threads() -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    def get_db() -> Iterator[str]:
        threads["setup"] = threading.get_ident()
        try:
            yield "db"
        finally:
            threads["teardown"] = threading.get_ident()

    async def endpoint(db: Annotated[str, Depends(get_db)]) -> None:
        pass

    async with dependency_exit_stack() as stack:
        assert await solve(endpoint, stack=stack) == {"db": "db"}
        assert "teardown" not in threads
    assert threads["setup"] != loop_thread
    assert threads["teardown"] != loop_thread


async def test_contextmanager_function_is_entered_and_exited_in_worker_threads() -> None:
    loop_thread = threading.get_ident()
    events: list[tuple[str, bool]] = []

    @contextlib.contextmanager
    def connection() -> Iterator[str]:
        events.append(("enter", threading.get_ident() != loop_thread))
        yield "connection"
        events.append(("exit", threading.get_ident() != loop_thread))

    async def endpoint(conn: Annotated[str, Depends(connection)]) -> None:
        pass

    async with dependency_exit_stack() as stack:
        assert await solve(endpoint, stack=stack) == {"conn": "connection"}
    assert events == [("enter", True), ("exit", True)]


async def test_a_blocking_sync_teardown_leaves_the_event_loop_running() -> None:
    unblock = threading.Event()

    def session() -> Iterator[None]:
        yield
        if not unblock.wait(BOUND):
            raise AssertionError("the event loop was stalled while the teardown blocked")

    async def endpoint(s: Annotated[None, Depends(session)]) -> None:
        pass

    async def release_soon() -> None:
        await trio.sleep(0.01)
        unblock.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_soon)
        async with dependency_exit_stack() as stack:
            await solve(endpoint, stack=stack)


async def test_the_handlers_exception_is_thrown_into_a_sync_generator_at_its_yield() -> None:
    seen: list[str] = []

    def session() -> Iterator[None]:
        try:
            yield
        except ValueError as exc:
            seen.append(f"rollback after {exc}")
            raise

    async def endpoint(s: Annotated[None, Depends(session)]) -> None:
        pass

    with pytest.raises(ValueError, match="handler failed"):
        async with dependency_exit_stack() as stack:
            await solve(endpoint, stack=stack)
            raise ValueError("handler failed")
    assert seen == ["rollback after handler failed"]


async def test_a_sync_generator_may_suppress_the_handlers_exception() -> None:
    def forgiving() -> Iterator[None]:
        with contextlib.suppress(LookupError):
            yield

    async def endpoint(s: Annotated[None, Depends(forgiving)]) -> None:
        pass

    async with dependency_exit_stack() as stack:
        await solve(endpoint, stack=stack)
        raise KeyError("suppressed by the dependency")


async def test_sync_and_async_context_managers_are_torn_down_once_each_in_reverse_order() -> None:
    events: list[str] = []

    def sync_outer() -> Iterator[None]:
        events.append("sync outer in")
        yield
        events.append("sync outer out")

    async def async_middle(o: Annotated[None, Depends(sync_outer)]) -> AsyncIterator[None]:
        events.append("async middle in")
        yield
        events.append("async middle out")

    @contextlib.contextmanager
    def sync_inner(m: Annotated[None, Depends(async_middle)]) -> Iterator[None]:
        events.append("sync inner in")
        yield
        events.append("sync inner out")

    async def endpoint(
        i: Annotated[None, Depends(sync_inner)], again: Annotated[None, Depends(sync_outer)]
    ) -> None:
        pass

    async with dependency_exit_stack() as stack:
        await solve(endpoint, stack=stack)
        events.append("handler")
    assert events == [
        "sync outer in",
        "async middle in",
        "sync inner in",
        "handler",
        "sync inner out",
        "async middle out",
        "sync outer out",
    ]


async def test_a_sync_generator_that_fails_to_set_up_is_not_torn_down() -> None:
    events: list[str] = []

    def broken() -> Iterator[None]:
        events.append("setup")
        raise OSError("database unreachable")
        yield  # pragma: no cover - makes this a generator

    async def endpoint(b: Annotated[None, Depends(broken)]) -> None:
        pass

    with pytest.raises(OSError, match="unreachable"):
        async with dependency_exit_stack() as stack:
            await solve(endpoint, stack=stack)
    assert events == ["setup"]


async def test_a_sync_context_manager_class_is_constructed_not_entered() -> None:
    """As in FastAPI: ``Depends(SomeClass)`` constructs; only generators are entered."""

    class Client:
        entered = False

        def __enter__(self) -> "Client":
            self.entered = True
            return self

        def __exit__(self, *exc_info: object) -> None:
            pass

    async def endpoint(client: Client = Depends()) -> None:
        pass

    client = (await solve(endpoint))["client"]
    assert isinstance(client, Client)
    assert not client.entered


async def test_a_sync_teardown_past_the_budget_still_runs_exactly_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    unblock = threading.Event()
    finished = threading.Event()
    runs: list[str] = []

    def first() -> Iterator[None]:
        try:
            yield
        finally:  # reached with trio.Cancelled thrown in: the budget is spent
            runs.append("first")

    def slow() -> Iterator[None]:
        yield
        unblock.wait(BOUND)
        runs.append("slow")
        finished.set()

    async def endpoint(a: Annotated[None, Depends(first)], b: Annotated[None, Depends(slow)]) -> None:
        pass

    start = trio.current_time()
    with caplog.at_level(logging.WARNING, logger="trioapi.dependencies"):
        async with dependency_exit_stack(timeout=2.0) as stack:
            await solve(endpoint, stack=stack)
    # The budget ran out while ``slow`` blocked: its thread is left to finish, and
    # ``first`` (not reached by then) was still started, once.
    assert trio.current_time() - start == pytest.approx(2.0)
    assert "took longer than 2.0 s" in caplog.text
    unblock.set()
    assert await trio.to_thread.run_sync(finished.wait, BOUND)
    for _ in range(100):  # ``first`` runs in a thread nobody waits for
        if "first" in runs:
            break
        await trio.to_thread.run_sync(threading.Event().wait, 0.01)
    assert sorted(runs) == ["first", "slow"]


async def test_sync_generator_is_entered_once_per_connection_when_cached() -> None:
    entered: list[int] = []

    def resource() -> Iterator[int]:
        entered.append(1)
        yield len(entered)

    async def uses(r: Annotated[int, Depends(resource)]) -> int:
        return r

    async def endpoint(a: Annotated[int, Depends(resource)], b: Annotated[int, Depends(uses)]) -> None:
        pass

    assert await solve(endpoint) == {"a": 1, "b": 1}


async def test_a_sync_generator_can_be_overridden_by_an_async_one() -> None:
    def real() -> Iterator[str]:
        yield "real"

    async def fake() -> AsyncIterator[str]:
        yield "fake"

    async def endpoint(value: Annotated[str, Depends(real)]) -> None:
        pass

    assert await solve(endpoint, overrides={real: fake}) == {"value": "fake"}


async def test_the_common_fastapi_database_dependency_works_on_a_websocket_route() -> None:
    """``def get_db(): db = Session(); try: yield db; finally: db.close()``, ported as is."""

    class Session:
        def __init__(self) -> None:
            self.closed = False
            sessions.append(self)

        def close(self) -> None:
            self.closed = True

    sessions: list[Session] = []

    def get_db() -> Iterator[Session]:
        db = Session()
        try:
            yield db
        finally:
            db.close()

    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, db: Session = Depends(get_db)) -> None:
        await websocket.accept()
        await websocket.send_json({"open": not db.closed})
        await websocket.receive_text()

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_json() == {"open": True}
            await ws.close()
    assert len(sessions) == 1
    assert sessions[0].closed


async def test_a_sync_generator_sees_the_clients_disconnect() -> None:
    seen = trio.Event()
    codes: list[int] = []

    def session() -> Iterator[None]:
        try:
            yield
        except WebSocketDisconnect as exc:
            codes.append(exc.code)
            raise
        finally:
            trio.from_thread.run_sync(seen.set)

    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, s: None = Depends(session)) -> None:
        await websocket.accept()
        await websocket.receive_text()

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as ws:
            await ws.close(4001)
        with trio.fail_after(BOUND):
            await seen.wait()
    assert codes == [4001]


# -- the example ---------------------------------------------------------------------------------


async def test_sync_dependencies_example_stores_lines_and_closes_the_database_last() -> None:
    sync_dependencies.closed.clear()
    async with TestClient(sync_dependencies.app) as client:
        async with client.websocket_connect("/speak/lobby") as ws:
            await ws.send_text("hello")
            assert await ws.receive_text() == "lobby: 1 line(s)"
            await ws.send_text("again")
            assert await ws.receive_text() == "lobby: 2 line(s)"
    assert sync_dependencies.closed == ["room", "db"]


async def test_sync_dependencies_example_lets_one_speaker_per_room_at_a_time() -> None:
    async with TestClient(sync_dependencies.app) as client:
        async with client.websocket_connect("/speak/stage") as first:
            await first.send_text("mine")
            assert await first.receive_text() == "stage: 1 line(s)"
            with pytest.raises(trio.TooSlowError):
                with trio.fail_after(0.2):  # waits for the room while the first speaker holds it
                    async with client.websocket_connect("/speak/stage"):
                        pass
        async with client.websocket_connect("/speak/stage") as second:
            await second.send_text("now me")
            assert await second.receive_text() == "stage: 1 line(s)"
