"""``websocket_route``, ``add_websocket_route``: Starlette's route, whose endpoint gets only the WebSocket."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from trioapi import APIRouter, TrioAPI, WebSocket, WebSocketException
from trioapi.exceptions import RouteDefinitionError
from trioapi.routing import APIWebSocketRoute, NoMatchFound, WebSocketRoute
from trioapi.testing import TestClient, WebSocketRejected


async def _greet(websocket: Any) -> None:
    """Greets by the room in the path, if there is one."""
    await websocket.accept()
    await websocket.send_text(f"Hello, {websocket.path_params.get('room', 'world')}!")
    await websocket.close()


async def _first_message(app: TrioAPI, path: str) -> str:
    async with TestClient(app) as client, client.websocket_connect(path) as ws:
        return await ws.receive_text()


async def test_the_decorated_endpoint_gets_the_websocket_whatever_its_parameter_is_called() -> None:
    app = TrioAPI()

    @app.websocket_route("/")
    async def plain(ws):  # unannotated, as Starlette apps often write it
        await ws.accept()
        await ws.send_text(f"{type(ws).__name__} at {ws.url.path}")

    assert await _first_message(app, "/") == "WebSocket at /"


async def test_path_parameters_are_converted_into_path_params() -> None:
    app = TrioAPI()

    @app.websocket_route("/rooms/{room}/{seat:int}")
    async def seat(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(websocket.path_params)

    async with TestClient(app) as client, client.websocket_connect("/rooms/blue/7") as ws:
        assert await ws.receive_json() == {"room": "blue", "seat": 7}


async def test_add_websocket_route_takes_partials_and_bound_methods() -> None:
    class Greeter:
        def __init__(self, greeting: str) -> None:
            self.greeting = greeting

        async def greet(self, websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.send_text(self.greeting)

    async def tagged(tag: str, websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(tag)

    app = TrioAPI()
    app.add_websocket_route("/method", Greeter("hi").greet)
    app.add_websocket_route("/partial", functools.partial(tagged, "tag"), name="partial")
    assert await _first_message(app, "/method") == "hi"
    assert await _first_message(app, "/partial") == "tag"


async def test_the_endpoint_runs_without_dependency_injection() -> None:
    app = TrioAPI()
    seen: list[Any] = []

    async def recording(websocket: WebSocket, q: str = "default") -> None:
        seen.append(q)
        await websocket.accept()
        await websocket.close()

    app.add_websocket_route("/ws", recording)
    async with TestClient(app) as client, client.websocket_connect("/ws?q=from-query") as ws:
        assert await ws.wait_closed() == (1000, "")
    assert seen == ["default"]


def test_an_endpoint_that_cannot_take_the_websocket_alone_is_refused_when_declared() -> None:
    async def needs_room(websocket: WebSocket, room: str) -> None: ...

    with pytest.raises(RouteDefinitionError, match="only argument"):
        TrioAPI().add_websocket_route("/ws/{room}", needs_room)


def test_a_sync_endpoint_is_refused_when_declared() -> None:
    def blocking(websocket: WebSocket) -> None: ...

    with pytest.raises(RouteDefinitionError, match="async def"):
        TrioAPI().add_websocket_route("/ws", blocking)


def test_the_route_is_a_websocket_route_named_after_the_endpoint() -> None:
    app = TrioAPI()
    route = app.add_websocket_route("/ws", _greet)
    assert isinstance(route, WebSocketRoute) and not isinstance(route, APIWebSocketRoute)
    assert route.name == "_greet"
    assert route.endpoint.__wrapped__ is _greet  # type: ignore[attr-defined]
    assert repr(route) == "WebSocketRoute(path='/ws', name='_greet')"


def test_dependency_injected_routes_are_websocket_routes_too() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def injected(websocket: WebSocket) -> None: ...

    assert isinstance(app.routes[-1], WebSocketRoute)


async def test_a_router_route_is_kept_through_include_router_with_its_prefixes() -> None:
    router = APIRouter(prefix="/chat")
    router.add_websocket_route("/{room}", _greet, name="room")
    app = TrioAPI()
    app.include_router(router, prefix="/v1")
    assert isinstance(app.routes[-1], WebSocketRoute)
    assert await _first_message(app, "/v1/chat/red") == "Hello, red!"


async def test_a_router_without_prefix_included_without_prefix_serves_the_same_path() -> None:
    router = APIRouter()
    router.websocket_route("/router")(_greet)
    app = TrioAPI()
    app.include_router(router)
    assert await _first_message(app, "/router") == "Hello, world!"


def test_url_path_for_finds_the_route_by_name_also_through_include_router() -> None:
    router = APIRouter()
    router.add_websocket_route("/rooms/{room}", _greet, name="room")
    app = TrioAPI()
    app.include_router(router, prefix="/v1")
    path = app.url_path_for("room", room="blue")
    assert path == "/v1/rooms/blue" and path.protocol == "websocket"
    with pytest.raises(NoMatchFound):
        app.url_path_for("room")


async def test_url_for_in_the_endpoint_gives_a_ws_url() -> None:
    app = TrioAPI()

    @app.websocket_route("/rooms/{room}", name="room")
    async def room(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.url_for("room", room="green"))

    assert await _first_message(app, "/rooms/x") == "ws://testserver/rooms/green"


async def test_the_error_contract_applies_websocket_exception_before_accept() -> None:
    app = TrioAPI()

    @app.websocket_route("/ws")
    async def refuse(websocket: WebSocket) -> None:
        raise WebSocketException(4003, "no")

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
    assert (info.value.status_code, info.value.code, info.value.reason) == (403, 4003, "no")
