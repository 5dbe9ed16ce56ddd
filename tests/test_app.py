"""The app, its routes and the per-connection error contract, through the in-memory TestClient."""

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


async def test_unknown_path_is_denied_with_404() -> None:
    app = TrioAPI()
    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/nowhere"):
                pass
    assert info.value.status_code == 404


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


# -- the error contract ----------------------------------------------------------


async def test_return_after_accept_closes_with_1000() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("bye")

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_text() == "bye"
        assert await ws.wait_closed() == (1000, "")


async def test_return_without_accept_rejects_with_403() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        return

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
    assert info.value.status_code == 403


async def test_exception_after_accept_closes_1011_without_detail_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise ValueError("secret internal detail")

    caplog.set_level(logging.ERROR, logger="trioapi")
    async with (
        TestClient(app, raise_server_exceptions=False) as client,
        client.websocket_connect("/ws") as ws,
    ):
        code, reason = await ws.wait_closed()
    assert code == 1011
    assert "secret" not in reason
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)


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


async def test_exception_before_accept_is_http_500() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        raise RuntimeError("no")

    async with TestClient(app, raise_server_exceptions=False) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
    assert info.value.status_code == 500
    assert info.value.body == b""


async def test_websocket_exception_closes_with_its_code() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise WebSocketException(4003, "not allowed")

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.wait_closed() == (4003, "not allowed")


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


async def test_http_exception_before_accept_is_a_denial_response() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        raise HTTPException(401, "who are you?", headers={"WWW-Authenticate": "Bearer"})

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
    assert info.value.status_code == 401
    assert info.value.headers["www-authenticate"] == "Bearer"
    assert info.value.json() == {"detail": "who are you?"}


async def test_http_exception_after_accept_closes_1008_with_the_detail() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise HTTPException(403, "x" * 300)

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        code, reason = await ws.wait_closed()
    assert code == 1008
    assert reason == "x" * 123


@pytest.mark.parametrize(
    ("frame", "expected"),
    [({"bytes": b"x"}, 1003), ({"text": "{nope"}, 1007)],
)
async def test_bad_client_data_closes_with_the_matching_code(frame: dict[str, Any], expected: int) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_json()

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        if "bytes" in frame:
            await ws.send_bytes(frame["bytes"])
        else:
            await ws.send_text(frame["text"])
        code, _ = await ws.wait_closed()
    assert code == expected


async def test_app_message_size_limit_closes_with_1009() -> None:
    app = TrioAPI(max_message_size=10)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("short")
        assert await ws.receive_text() == "short"
        await ws.send_text("much too long for this app")
        code, reason = await ws.wait_closed()
    assert code == 1009
    assert "limit of 10" in reason


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


async def test_one_crashing_connection_leaves_others_working() -> None:
    app = TrioAPI()

    @app.websocket("/ws/{name}")
    async def endpoint(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            if text == "crash":
                raise RuntimeError("crash")
            await websocket.send_text(f"{name}:{text}")

    async with TestClient(app, raise_server_exceptions=False) as client:
        async with client.websocket_connect("/ws/a") as a, client.websocket_connect("/ws/b") as b:
            await a.send_text("crash")
            assert (await a.wait_closed())[0] == 1011
            await b.send_text("still here")
            assert await b.receive_text() == "b:still here"


# -- connection-scoped concurrency -------------------------------------------------


async def test_tasks_started_for_a_connection_end_with_it() -> None:
    app = TrioAPI()
    events: list[str] = []

    async def ticker(websocket: WebSocket) -> None:
        try:
            while True:
                await websocket.send_text("tick")
                await trio.sleep(1)
        finally:
            events.append("ticker ended")

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.start_soon(ticker, websocket)
        await websocket.receive_text()
        events.append("handler returned")

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_text() == "tick"
        await ws.send_text("stop")
        assert await ws.wait_closed() == (1000, "")
    assert events == ["handler returned", "ticker ended"]


async def test_a_connection_task_that_sees_a_disconnect_just_ends() -> None:
    app = TrioAPI()
    ended = trio.Event()

    async def pusher(websocket: WebSocket) -> None:
        try:
            await websocket.wait_disconnected()
            await websocket.send_text("too late")  # raises WebSocketDisconnect
        finally:
            ended.set()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.start_soon(pusher, websocket)
        await ended.wait()

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.close(1000)
    assert ended.is_set()


async def test_a_failing_connection_task_closes_1011(autojump_clock: trio.testing.MockClock) -> None:
    app = TrioAPI()

    async def broken() -> None:
        await trio.sleep(1)
        raise KeyError("task bug")

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.start_soon(broken)
        await websocket.receive_text()

    async with (
        TestClient(app, raise_server_exceptions=False) as client,
        client.websocket_connect("/ws") as ws,
    ):
        assert (await ws.wait_closed())[0] == 1011


async def test_push_only_handler_ends_when_the_client_vanishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = TrioAPI()
    ended = trio.Event()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            with trio.move_on_after(3600):
                async with trio.open_nursery() as nursery:

                    async def push() -> None:
                        while True:
                            await websocket.send_text("data")
                            await trio.sleep(0.1)

                    nursery.start_soon(push)
                    await websocket.wait_disconnected()
                    nursery.cancel_scope.cancel()
        finally:
            ended.set()

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_text() == "data"
        await ws.vanish()
        with trio.fail_after(1):
            await ended.wait()


# -- shutdown --------------------------------------------------------------------


async def test_shutdown_sends_1001_and_handlers_see_it() -> None:
    app = TrioAPI()
    seen: list[int] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen.append(exc.code)

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await trio.testing.wait_all_tasks_blocked()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.shutdown_connections, 1.0)
            # Reading the close answers it, as a real client does: the handler sees 1001.
            assert await ws.wait_closed() == (1001, "server shutting down")
    assert seen == [1001]
    assert len(app.connections) == 0


async def test_shutdown_returns_when_the_last_handler_ends_not_at_the_grace() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.wait_disconnected()

    async def answer_goodbye(ws: Any) -> None:
        assert await ws.wait_closed() == (1001, "server shutting down")  # and answers it

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as one, client.websocket_connect("/ws") as two:
            await trio.testing.wait_all_tasks_blocked()
            assert len(app.connections) == 2
            # A grace of an hour: only the registry seeing its last handler end can return early.
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(answer_goodbye, one)
                    nursery.start_soon(answer_goodbye, two)
                    await app.shutdown_connections(3600)
            assert len(app.connections) == 0
        # Connections come and go again afterwards; a second shutdown with none open returns at once.
        async with client.websocket_connect("/ws"):
            await trio.testing.wait_all_tasks_blocked()
            assert len(app.connections) == 1
        with trio.fail_after(10):
            await app.shutdown_connections(3600)


async def test_shutdown_cancels_a_handler_still_running_after_the_grace() -> None:
    app = TrioAPI()
    outcome: list[str] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await trio.sleep_forever()  # never looks at the socket, so never sees the goodbye
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(10):
            await app.shutdown_connections(0.05)
        assert outcome == ["cancelled"]
        assert len(app.connections) == 0
        assert await ws.wait_closed() == (1001, "server shutting down")


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
