"""The app tunes the garbage collector once its lifespan has started, except in tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from functools import partial

import pytest
import trio
from trio_websocket import open_websocket_url

import trioapi
import trioapi._gc
import trioapi.applications
from trioapi import TrioAPI, WebSocket
from trioapi._gc import YOUNG_THRESHOLD
from trioapi._lifespan import LifespanDriver
from trioapi.server import tune_gc
from trioapi.testing import TestClient, WebSocketRejected


@pytest.fixture
def tunings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the app's calls to tune_gc instead of retuning the test process."""
    calls: list[str] = []
    monkeypatch.setattr(trioapi.applications, "tune_gc", lambda: calls.append("tuned"))
    return calls


async def _run_lifespan(app: TrioAPI, *, testing: bool) -> None:
    driver = LifespanDriver(app, timeout=5, testing=testing)
    async with trio.open_nursery() as nursery:
        await driver.startup(nursery)
        await driver.shutdown()


async def test_a_server_lifespan_tunes_the_gc_once_started(tunings: list[str]) -> None:
    await _run_lifespan(TrioAPI(), testing=False)
    assert tunings == ["tuned"]


async def test_tune_gc_false_leaves_the_collector_alone(tunings: list[str]) -> None:
    await _run_lifespan(TrioAPI(tune_gc=False), testing=False)
    assert tunings == []


async def test_the_test_client_never_tunes(tunings: list[str]) -> None:
    app = TrioAPI()
    async with TestClient(app):
        pass
    await _run_lifespan(app, testing=True)
    assert tunings == []


@pytest.fixture
def restored_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(trioapi._gc, "_tuned", False)  # tune_gc() sets it: restored after the test
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
    monkeypatch.setattr(trioapi._gc, "COLLECT_EVERY", 3)
    monkeypatch.setattr(trioapi._gc, "_closed", 0)
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
    monkeypatch.setattr(trioapi._gc, "_tuned", True)
    # Four served and two refused: six connections ended, two collections of every third.
    await _serve_and_refuse(4, 2)
    assert len(young_collections) == 2


async def test_an_untouched_collector_is_never_run_for_connections(
    young_collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trioapi._gc, "_tuned", False)
    await _serve_and_refuse(4, 2)
    assert young_collections == []


async def test_the_native_server_counts_its_connections_too(
    young_collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trioapi._gc, "_tuned", True)
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
