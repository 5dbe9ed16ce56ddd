"""Process policy (``trioapi.server._process``): who tunes the garbage collector and handles SIGTERM.

trioapi's own serving decides for its process (``ServerConfig.tune_gc``); an app
adopts only the ``multiprocessing`` workers of a server that leaves them
unconfigured (hypercorn's command line). The live side (hypercorn's CLI
signalled as a process group, or its worker alone) is in ``test_lifecycle_live.py``.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from functools import partial

import pytest
import trio
from trio_websocket import open_websocket_url

import trioapi
import trioapi.server
from trioapi import TrioAPI, WebSocket
from trioapi._lifespan import LifespanDriver
from trioapi.server import _process as process
from trioapi.server import tune_gc
from trioapi.server._process import YOUNG_THRESHOLD, sigterm_left_to_default
from trioapi.testing import TestClient, WebSocketRejected


@pytest.fixture
def tunings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record calls to tune_gc (by serve() and by an adopting app) instead of retuning the test process."""
    calls: list[str] = []
    monkeypatch.setattr(trioapi.server, "tune_gc", lambda: calls.append("serve"))
    monkeypatch.setattr(process, "tune_gc", lambda: calls.append("adopted"))
    return calls


async def _run_lifespan(app: TrioAPI, *, testing: bool) -> None:
    driver = LifespanDriver(app, timeout=5, testing=testing)
    async with trio.open_nursery() as nursery:
        await driver.startup(nursery)
        await driver.shutdown()


async def _serve_briefly(config: trioapi.server.ServerConfig) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(trioapi.serve, TrioAPI(), port=0, server="native", config=config))
        nursery.cancel_scope.cancel()


async def test_serve_tunes_the_gc_once_the_app_has_started_when_configured(tunings: list[str]) -> None:
    await _serve_briefly(trioapi.server.ServerConfig(tune_gc=True))
    assert tunings == ["serve"]


async def test_serve_leaves_the_collector_alone_by_default(tunings: list[str]) -> None:
    await _serve_briefly(trioapi.server.ServerConfig())
    assert tunings == []


async def test_an_app_in_a_main_process_adopts_nothing(tunings: list[str]) -> None:
    # The test run itself (or a user's program embedding hypercorn) owns its process.
    await _run_lifespan(TrioAPI(), testing=False)
    assert tunings == []


async def test_the_test_client_never_tunes(tunings: list[str]) -> None:
    app = TrioAPI()
    async with TestClient(app):
        pass
    await _run_lifespan(app, testing=True)
    assert tunings == []


#: Exit statuses of the child processes below: how SIGTERM was handled once the app had started.
OURS, DEFAULT, OWN = 10, 11, 12


def _own_handler(signum: int, frame: object) -> None:
    """A handler of the process's own."""


def _adopted_after_startup(own_handler: bool) -> None:
    """In a spawned child (a server's worker): start an app's lifespan, exit with what it adopted."""
    if own_handler:
        signal.signal(signal.SIGTERM, _own_handler)

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            driver = LifespanDriver(TrioAPI())
            await driver.startup(nursery)
            handler = signal.getsignal(signal.SIGTERM)
            tuned = gc.get_threshold()[0] == YOUNG_THRESHOLD
            await driver.shutdown()
        assert tuned == (os.environ.get(process.ADOPT_WORKERS_ENV) != "0")
        if handler is _own_handler:
            return OWN
        if handler is signal.SIG_DFL:
            return DEFAULT
        # Ours ends with the lifespan: SIGTERM's default action is back.
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        return OURS

    sys.exit(trio.run(main))


@pytest.mark.parametrize(
    ("adopt", "own_handler", "expected"),
    [
        ("1", False, OURS),  # hypercorn's CLI worker: SIGTERM would kill it outright
        ("0", False, DEFAULT),  # TRIOAPI_ADOPT_WORKERS=0: left as the server made it
        ("1", True, OWN),  # the process's own handler is kept
    ],
)
def test_an_app_adopts_a_worker_process_unless_told_not_to(
    adopt: str, own_handler: bool, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(process.ADOPT_WORKERS_ENV, adopt)  # inherited by the spawned child
    child = multiprocessing.get_context("spawn").Process(target=_adopted_after_startup, args=(own_handler,))
    child.start()
    try:
        child.join(30)
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
    assert child.exitcode == expected


def test_a_main_process_keeps_sigterm_default() -> None:
    assert multiprocessing.parent_process() is None
    assert not sigterm_left_to_default()


@pytest.fixture
def restored_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(process, "_tuned", False)  # tune_gc() sets it: restored after the test
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_tune_gc_freezes_the_heap_and_raises_the_young_threshold(restored_gc: None) -> None:
    before = gc.get_freeze_count()
    tune_gc()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_freeze_count() > before


@pytest.fixture
def young_collections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Generation-0 collections started while the test runs, with automatic ones switched off."""
    monkeypatch.setattr(process, "COLLECT_EVERY", 3)
    monkeypatch.setattr(process, "_closed", 0)
    started: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            started.append(0)

    enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(record)
    try:
        yield started
    finally:
        gc.callbacks.remove(record)
        if enabled:
            gc.enable()


def _echo_once_app() -> TrioAPI:
    app = TrioAPI()

    @app.websocket("/ws")
    async def echo_once(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())

    return app


async def _serve_and_refuse(served: int, refused: int) -> None:
    app = _echo_once_app()
    async with TestClient(app) as client:
        for _ in range(served):
            async with client.websocket_connect("/ws") as ws:
                await ws.send_text("hi")
                assert await ws.receive_text() == "hi"
        for _ in range(refused):
            with pytest.raises(WebSocketRejected):
                async with client.websocket_connect("/nowhere"):
                    pass


async def test_a_tuned_collector_collects_young_garbage_every_few_connections(
    young_collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "_tuned", True)
    # Four served and two refused: six connections ended, two collections of every third.
    await _serve_and_refuse(4, 2)
    assert len(young_collections) == 2


async def test_an_untouched_collector_is_never_run_for_connections(
    young_collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "_tuned", False)
    await _serve_and_refuse(4, 2)
    assert young_collections == []


async def test_the_native_server_counts_its_connections_too(
    young_collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "_tuned", True)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(trioapi.serve, _echo_once_app(), port=0, server="native"))
        for _ in range(3):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send_message("hi")
                assert await ws.get_message() == "hi"
        # The server ends its side of the third connection just after the client's close.
        for _ in range(500):  # at most 5 s
            if young_collections:
                break
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert young_collections == [0]
