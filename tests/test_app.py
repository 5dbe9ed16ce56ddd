"""The app and its routes through the in-memory TestClient, and what only the test client shows.

The per-connection error contract (close codes, denials, tasks, shutdown) is the
same on every transport: test_transport_contract.py checks it on all four.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trioapi import (
    APIRouter,
    HTMLResponse,
    HTTPException,
    PlainTextResponse,
    TrioAPI,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
)
from trioapi.exceptions import RouteDefinitionError
from trioapi.routing import APIWebSocketRoute, Match, NoMatchFound
from trioapi.testing import TestClient, WebSocketRejected

# -- routing -----------------------------------------------------------------


async def test_without_denial_responses_every_refusal_is_a_403_close() -> None:
    app = TrioAPI()

    @app.websocket("/auth")
    async def auth(websocket: WebSocket) -> None:
        raise HTTPException(401, "no")

    async with TestClient(app, denial_responses=False) as client:
        for path in ("/nowhere", "/auth"):
            with pytest.raises(WebSocketRejected) as info:
                async with client.websocket_connect(path):
                    pass
            assert (info.value.status_code, info.value.code) == (403, 1008)


async def test_path_convertors_convert_and_constrain() -> None:
    app = TrioAPI()

    @app.websocket("/items/{item_id:int}/{price:float}/{rest:path}")
    async def item(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({k: [v, type(v).__name__] for k, v in websocket.path_params.items()})

    async with TestClient(app) as client:
        async with client.websocket_connect("/items/7/2.5/a/b") as ws:
            assert await ws.receive_json() == {
                "item_id": [7, "int"],
                "price": [2.5, "float"],
                "rest": ["a/b", "str"],
            }
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/items/x/2.5/a"):
                pass
        assert info.value.status_code == 404


async def test_a_refused_handshake_is_also_a_websocket_disconnect_as_in_starlette() -> None:
    app = TrioAPI()
    async with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as info:
            async with client.websocket_connect("/nowhere"):
                pass
    assert isinstance(info.value, WebSocketRejected)
    assert (info.value.code, info.value.status_code) == (1006, 404)


def test_route_matches_and_builds_its_url() -> None:
    async def endpoint(websocket: WebSocket, room: str) -> None: ...

    route = APIWebSocketRoute("/rooms/{room}", endpoint)
    assert route.name == "endpoint"
    match, child = route.matches({"type": "websocket", "path": "/rooms/blue"})
    assert match is Match.FULL
    assert child["path_params"] == {"room": "blue"}
    assert route.matches({"type": "websocket", "path": "/other"})[0] is Match.NONE
    assert route.matches({"type": "http", "path": "/rooms/blue", "method": "GET"})[0] is Match.NONE
    assert route.url_path_for("endpoint", room="blue") == "/rooms/blue"
    assert route.url_path_for("endpoint", room="blue").protocol == "websocket"
    with pytest.raises(NoMatchFound):
        route.url_path_for("endpoint")
    with pytest.raises(NoMatchFound):
        route.url_path_for("other", room="blue")


def test_paths_match_exactly_with_or_without_parameters() -> None:
    async def endpoint(websocket: WebSocket) -> None: ...

    static = APIWebSocketRoute("/ws", endpoint)
    param = APIWebSocketRoute("/rooms/{room}/ws", endpoint)
    assert static.matches({"type": "websocket", "path": "/ws"})[1]["path_params"] == {}
    # A regex ending in "$" would also take a path with a final newline.
    for path in ("/ws\n", "/ws/", "/w", "/wss"):
        assert static.matches({"type": "websocket", "path": path})[0] is Match.NONE, path
    assert param.matches({"type": "websocket", "path": "/rooms/blue/ws"})[0] is Match.FULL
    assert param.matches({"type": "websocket", "path": "/rooms/blue/ws\n"})[0] is Match.NONE
    # Each match gets a params dict of its own, so one request cannot change another's.
    first = static.matches({"type": "websocket", "path": "/ws"})[1]["path_params"]
    first["x"] = 1
    assert static.matches({"type": "websocket", "path": "/ws"})[1]["path_params"] == {}


def test_sync_websocket_endpoint_is_refused_when_declared() -> None:
    app = TrioAPI()
    with pytest.raises(RouteDefinitionError, match="async def"):

        @app.websocket("/ws")
        def endpoint(websocket: WebSocket) -> None: ...


def test_unknown_convertor_is_refused() -> None:
    async def endpoint(websocket: WebSocket) -> None: ...

    with pytest.raises(RouteDefinitionError, match="convertor"):
        APIWebSocketRoute("/x/{y:date}", endpoint)


async def test_include_router_adds_prefix_and_url_path_for_finds_it() -> None:
    router = APIRouter(prefix="/chat")

    @router.websocket("/{room}", name="room")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        await websocket.send_text(room)

    app = TrioAPI()
    app.include_router(router, prefix="/v1")
    assert app.url_path_for("room", room="x") == "/v1/chat/x"
    async with TestClient(app) as client, client.websocket_connect("/v1/chat/lobby") as ws:
        assert await ws.receive_text() == "lobby"


async def test_url_for_gives_an_absolute_ws_url() -> None:
    app = TrioAPI()

    @app.websocket("/rooms/{room}", name="room")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.url_for("room", room="red"))

    async with TestClient(app) as client, client.websocket_connect("/rooms/x") as ws:
        assert await ws.receive_text() == "ws://testserver/rooms/red"


# -- errors, as the test client shows them -----------------------------------------


async def test_exception_is_reraised_into_the_test_by_default() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise ValueError("boom")

    async with TestClient(app) as client:
        with pytest.raises(ValueError, match="boom"):
            async with client.websocket_connect("/ws") as ws:
                await ws.wait_closed()


async def test_websocket_exception_before_accept_rejects() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        raise WebSocketException(1008, "policy")

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
    assert (info.value.status_code, info.value.code, info.value.reason) == (403, 1008, "policy")


async def test_escaping_websocket_disconnect_is_normal(caplog: pytest.LogCaptureFixture) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    caplog.set_level(logging.INFO, logger="trioapi")
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.close(1000)
    # Only the access log's two lines: accepted, then closed by the client.
    assert [r.name for r in caplog.records if r.levelno >= logging.INFO] == ["trioapi.access"] * 2
    assert caplog.records[-1].getMessage().endswith("closed 1000 by client after 0.00 s, 0 in / 0 out")


async def test_exception_handler_receives_the_websocket() -> None:
    app = TrioAPI()

    class Oops(Exception):
        pass

    @app.exception_handler(Oops)
    async def handle(websocket: Any, exc: Exception) -> None:
        await websocket.send_text(f"handled {type(exc).__name__}")
        await websocket.close(4000)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise Oops

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_text() == "handled Oops"
        assert await ws.wait_closed() == (4000, "")


# -- shutdown --------------------------------------------------------------------


async def test_after_a_shutdown_new_connections_count_and_a_second_one_returns_at_once() -> None:
    # That a shutdown ends with the last handler, not at the grace, is in test_transport_contract.py.
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.wait_disconnected()

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as ws:
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(app.shutdown_connections, 3600)
                    assert await ws.wait_closed() == (1001, "server shutting down")  # and answers it
        assert len(app.connections) == 0
        async with client.websocket_connect("/ws"):
            await trio.testing.wait_all_tasks_blocked()
            assert len(app.connections) == 1
        # A grace of an hour and nothing open: only an empty registry lets it return.
        with trio.fail_after(10):
            await app.shutdown_connections(3600)


# -- lifespan ----------------------------------------------------------------------


async def test_lifespan_state_and_app_nursery() -> None:
    log: list[str] = []

    @asynccontextmanager
    async def lifespan(app: TrioAPI) -> AsyncIterator[dict[str, Any]]:
        log.append("startup")
        app.state.greeting = "hello"
        yield {"db": "connected"}
        log.append("shutdown")

    app = TrioAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        assert websocket.app.nursery is app.nursery
        await websocket.send_json([websocket.state.db, websocket.app.state.greeting])

    async with TestClient(app) as client:
        assert log == ["startup"]
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_json() == ["connected", "hello"]
    assert log == ["startup", "shutdown"]


async def test_lifespan_startup_failure_is_a_clear_error() -> None:
    @asynccontextmanager
    async def lifespan(app: TrioAPI) -> AsyncIterator[None]:
        raise ConnectionError("database unreachable")
        yield

    from trioapi.testing import LifespanError

    with pytest.raises(LifespanError, match="database unreachable"):
        async with TestClient(TrioAPI(lifespan=lifespan)):
            pass


# -- HTTP routes -------------------------------------------------------------------


async def test_http_routes_serve_json_html_text_and_errors() -> None:
    app = TrioAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    def page() -> HTMLResponse:
        return HTMLResponse("<h1>chat</h1>")

    @app.post("/echo")
    async def echo() -> PlainTextResponse:
        return PlainTextResponse("posted", status_code=201)

    @app.get("/private")
    async def private() -> None:
        raise HTTPException(403, "forbidden", headers={"X-Why": "because"})

    async with TestClient(app) as client:
        health_response = await client.get("/health")
        assert (health_response.status_code, health_response.json()) == (200, {"status": "ok"})
        page_response = await client.get("/")
        assert page_response.headers["content-type"] == "text/html; charset=utf-8"
        assert page_response.text == "<h1>chat</h1>"
        assert (await client.post("/echo")).status_code == 201
        denied = await client.get("/private")
        assert (denied.status_code, denied.json(), denied.headers["x-why"]) == (
            403,
            {"detail": "forbidden"},
            "because",
        )
        assert (await client.get("/missing")).status_code == 404
        assert (await client.delete("/health")).status_code == 405
