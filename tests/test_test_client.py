"""The in-memory test client as a ported app's tests use it: settled connects, cookies, asserting silence."""

from __future__ import annotations

import re

import pytest
import trio
import trio.testing

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect
from trioapi import testing as trioapi_testing
from trioapi.responses import JSONResponse
from trioapi.testing import TestClient


def _registry_app(registered: list[str]) -> TrioAPI:
    """A handler that does several awaits after accept before it registers the connection."""
    app = TrioAPI()

    @app.websocket("/ws/{name}")
    async def join(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        for _ in range(5):
            await trio.lowlevel.checkpoint()  # as a database call or a broadcast would
        await websocket.send_text(f"welcome {name}")
        registered.append(name)
        try:
            await websocket.receive_text()
        finally:
            registered.remove(name)

    return app


# -- websocket_connect returns once the app has settled ---------------------------


async def test_connect_returns_after_the_handler_reached_its_next_wait() -> None:
    registered: list[str] = []
    async with TestClient(_registry_app(registered)) as client:
        async with client.websocket_connect("/ws/ann"):
            assert registered == ["ann"]
            async with client.websocket_connect("/ws/bob"):
                assert registered == ["ann", "bob"]
        assert registered == []


async def test_connect_also_waits_for_tasks_the_handler_started() -> None:
    app = TrioAPI()
    members: set[WebSocket] = set()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        async def join() -> None:
            await trio.lowlevel.checkpoint()
            members.add(websocket)

        await websocket.accept()
        websocket.start_soon(join)
        await websocket.wait_disconnected()

    async with TestClient(app) as client, client.websocket_connect("/ws"):
        assert len(members) == 1


async def test_connect_settles_under_the_autojump_clock(autojump_clock: trio.testing.MockClock) -> None:
    registered: list[str] = []
    async with TestClient(_registry_app(registered)) as client, client.websocket_connect("/ws/ann") as ws:
        assert registered == ["ann"]
        assert trio.current_time() == 0  # settling moved no virtual time
        assert await ws.receive_text() == "welcome ann"


async def test_connect_goes_on_when_the_app_never_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trioapi_testing, "SETTLE_LIMIT", 0.01)
    app = TrioAPI()

    stop, stopped = trio.Event(), trio.Event()

    @app.websocket("/ws")
    async def busy(websocket: WebSocket) -> None:
        await websocket.accept()
        with trio.move_on_after(5):
            while not stop.is_set():  # never waits: the app never settles
                await trio.lowlevel.checkpoint()
        stopped.set()
        await websocket.close()

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert not stopped.is_set()  # connect came back while the app was still busy
        stop.set()
        assert await ws.wait_closed() == (1000, "")


# -- cookies ----------------------------------------------------------------------


def _cookie_app() -> TrioAPI:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(websocket.cookies)

    @app.post("/login")
    async def login() -> JSONResponse:
        response = JSONResponse({"ok": True})
        response.set_cookie("session", "s3cret", httponly=True)
        return response

    @app.post("/logout")
    async def logout() -> JSONResponse:
        response = JSONResponse({"ok": True})
        response.delete_cookie("session")
        return response

    return app


async def test_connect_sends_the_cookies_it_is_given() -> None:
    async with TestClient(_cookie_app()) as client:
        async with client.websocket_connect("/ws", cookies={"session": "abc", "theme": "dark"}) as ws:
            assert await ws.receive_json() == {"session": "abc", "theme": "dark"}


async def test_client_cookies_go_with_every_handshake_and_a_connect_cookie_wins() -> None:
    async with TestClient(_cookie_app(), cookies={"session": "client", "lang": "fr"}) as client:
        async with client.websocket_connect("/ws", cookies={"session": "mine"}) as ws:
            assert await ws.receive_json() == {"session": "mine", "lang": "fr"}
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_json() == {"session": "client", "lang": "fr"}


async def test_a_cookie_set_by_an_http_route_reaches_the_websocket_until_deleted() -> None:
    async with TestClient(_cookie_app()) as client:
        await client.post("/login")
        assert client.cookies == {"session": "s3cret"}
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_json() == {"session": "s3cret"}
        await client.post("/logout")
        assert client.cookies == {}


# -- assert_no_message ------------------------------------------------------------


def _rooms_app() -> TrioAPI:
    app = TrioAPI()
    rooms: dict[str, set[WebSocket]] = {}

    @app.websocket("/rooms/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        members = rooms.setdefault(room, set())
        members.add(websocket)
        try:
            async for text in websocket.iter_text():
                if text == "bye":
                    await websocket.close(4000, "asked")
                    return
                for member in members - {websocket}:
                    await member.send_text(text)
        finally:
            members.discard(websocket)

    return app


async def test_silence_passes_and_a_message_fails_with_its_content() -> None:
    async with (
        TestClient(_rooms_app()) as client,
        client.websocket_connect("/rooms/a") as ann,
        client.websocket_connect("/rooms/a") as bob,
        client.websocket_connect("/rooms/b") as cid,
    ):
        await ann.send_text("hello room a")
        await cid.assert_no_message(within=0.1)
        with pytest.raises(AssertionError, match="hello room a"):
            await bob.assert_no_message(within=0.1)
        assert await bob.receive_text() == "hello room a"  # kept for the next receive


async def test_a_message_about_to_be_sent_is_seen_however_short_the_window() -> None:
    async with (
        TestClient(_rooms_app()) as client,
        client.websocket_connect("/rooms/a") as ann,
        client.websocket_connect("/rooms/a") as bob,
    ):
        await ann.send_text("quick")
        with pytest.raises(AssertionError, match="quick"):
            await bob.assert_no_message(within=0)


async def test_a_close_within_the_window_fails_and_is_kept() -> None:
    async with TestClient(_rooms_app()) as client, client.websocket_connect("/rooms/a") as ann:
        await ann.send_text("bye")
        with pytest.raises(AssertionError, match=re.escape("close frame (4000, 'asked')")):
            await ann.assert_no_message()
        with pytest.raises(WebSocketDisconnect) as info:
            await ann.receive_text()
        assert info.value.code == 4000


async def test_the_window_passes_instantly_under_the_autojump_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with TestClient(_rooms_app()) as client, client.websocket_connect("/rooms/a") as ann:
        await ann.assert_no_message(within=30)
        assert trio.current_time() == 30


async def test_an_app_error_during_the_window_is_raised() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def broken(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise LookupError("a bug")

    async with TestClient(app) as client:
        with pytest.raises(LookupError, match="a bug"):
            async with client.websocket_connect("/ws") as ws:
                await ws.send_text("go")
                await ws.assert_no_message()


async def test_asserting_silence_on_a_closed_socket_is_a_mistake() -> None:
    async with TestClient(_rooms_app()) as client, client.websocket_connect("/rooms/a") as ann:
        await ann.close()
        with pytest.raises(RuntimeError, match="closed"):
            await ann.assert_no_message()
