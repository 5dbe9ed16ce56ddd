"""``on_event``, ``add_event_handler``: FastAPI's deprecated startup and shutdown handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from trioapi import APIRouter, TrioAPI, WebSocket
from trioapi.testing import LifespanError, TestClient


def _app_with_handlers(log: list[str]) -> TrioAPI:
    app = TrioAPI()
    with pytest.deprecated_call():

        @app.on_event("startup")
        async def open_db() -> None:
            await trio.lowlevel.checkpoint()
            log.append("startup: db")

        @app.on_event("startup")
        def load_config() -> None:
            log.append("startup: config")

        @app.on_event("shutdown")
        async def close_db() -> None:
            log.append("shutdown: db")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        log.append("connection")
        await websocket.accept()
        await websocket.close()

    return app


async def test_handlers_run_in_order_around_the_app_life() -> None:
    log: list[str] = []
    async with TestClient(_app_with_handlers(log)) as client:
        assert log == ["startup: db", "startup: config"]
        async with client.websocket_connect("/ws") as session:
            await session.wait_closed()
    assert log == ["startup: db", "startup: config", "connection", "shutdown: db"]


def test_the_deprecation_warning_points_to_lifespan() -> None:
    app = TrioAPI()
    with pytest.warns(DeprecationWarning, match="lifespan") as on_event_warnings:
        app.on_event("startup")
    with pytest.warns(DeprecationWarning, match="lifespan") as add_warnings:
        app.add_event_handler("shutdown", lambda: None)
    assert on_event_warnings[0].filename == add_warnings[0].filename == __file__


async def test_a_startup_handler_can_start_tasks_in_the_app_nursery() -> None:
    app = TrioAPI()
    ticks: list[int] = []

    async def tick() -> None:
        for n in range(3):
            ticks.append(n)
            await trio.lowlevel.checkpoint()
        await trio.sleep_forever()

    with pytest.deprecated_call():
        app.add_event_handler("startup", lambda: app.nursery.start_soon(tick))
    async with TestClient(app):
        for _ in range(10):
            await trio.lowlevel.checkpoint()
    assert ticks == [0, 1, 2]


async def test_handlers_do_not_run_when_the_app_has_a_lifespan() -> None:
    log: list[str] = []

    @asynccontextmanager
    async def lifespan(app: TrioAPI) -> AsyncIterator[None]:
        log.append("lifespan up")
        yield
        log.append("lifespan down")

    app = TrioAPI(lifespan=lifespan)
    with pytest.deprecated_call():
        app.add_event_handler("startup", lambda: log.append("startup handler"))
        app.add_event_handler("shutdown", lambda: log.append("shutdown handler"))
    async with TestClient(app):
        pass
    assert log == ["lifespan up", "lifespan down"]


async def test_a_router_handlers_come_with_include_router() -> None:
    log: list[str] = []
    router = APIRouter()
    with pytest.deprecated_call():
        router.add_event_handler("startup", lambda: log.append("router startup"))
    app = TrioAPI()
    app.include_router(router)
    async with TestClient(app):
        assert log == ["router startup"]


async def test_a_failing_startup_handler_fails_the_startup() -> None:
    app = TrioAPI()

    def broken() -> None:
        raise ConnectionError("database unreachable")

    with pytest.deprecated_call():
        app.add_event_handler("startup", broken)
    with pytest.raises(LifespanError, match="database unreachable"):
        async with TestClient(app):
            pass


def test_an_unknown_event_type_is_refused() -> None:
    with pytest.deprecated_call(), pytest.raises(ValueError, match="startup"):
        TrioAPI().add_event_handler("startpu", lambda: None)
