"""The app tunes the garbage collector once its lifespan has started, except in tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio

import trioapi.applications
from trioapi import TrioAPI
from trioapi._gc import YOUNG_THRESHOLD
from trioapi._lifespan import LifespanDriver
from trioapi.server import tune_gc
from trioapi.testing import TestClient


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
def restored_gc() -> Iterator[None]:
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
