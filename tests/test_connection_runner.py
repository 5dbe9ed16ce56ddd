"""The connection runner at the ASGI level: a server's cancellation is a goodbye, the handler's is not."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect
from trioapi._connection import CLOSE_TIMEOUT


class FakeServer:
    """Drives ``app`` for one WebSocket the way an ASGI server does, recording what it sends."""

    def __init__(self, path: str) -> None:
        self.to_app, self._inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.sent: list[dict[str, Any]] = []
        self.accepted = trio.Event()
        self.closed = trio.Event()
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},  # as every ASGI server sends (Starlette's test client does not)
            "scheme": "ws",
            "path": path,
            "query_string": b"",
            "headers": [],
            "subprotocols": [],
        }
        self.to_app.send_nowait({"type": "websocket.connect"})

    async def receive(self) -> dict[str, Any]:
        return await self._inbox.receive()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "websocket.accept":
            self.accepted.set()
        elif message["type"] == "websocket.close":
            self.closed.set()

    async def serve(self, app: TrioAPI) -> None:
        await app(self.scope, self.receive, self.send)

    def closes(self) -> list[int]:
        return [m["code"] for m in self.sent if m["type"] == "websocket.close"]


async def test_a_server_cancelling_the_connection_is_a_1001_goodbye() -> None:
    app = TrioAPI()
    seen: list[object] = []

    @app.websocket("/hold")
    async def hold(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen.append(exc.code)
            raise

    server = FakeServer("/hold")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:  # plays hypercorn's server nursery
            nursery.start_soon(server.serve, app)
            await server.accepted.wait()
            nursery.cancel_scope.cancel()
    assert seen == [1001]
    assert server.closes() == [1001]


async def test_the_handlers_own_timeout_around_receive_stays_a_timeout() -> None:
    app = TrioAPI()

    @app.websocket("/patient")
    async def patient(websocket: WebSocket) -> None:
        await websocket.accept()
        with trio.move_on_after(0.01) as scope:
            await websocket.receive_text()
        await websocket.send_text("timed out" if scope.cancelled_caught else "got a message")

    server = FakeServer("/patient")
    with trio.fail_after(5):
        await server.serve(app)
    assert [m.get("text") for m in server.sent if m["type"] == "websocket.send"] == ["timed out"]
    assert server.closes() == [1000]


async def test_after_the_apps_close_the_app_returns_once_the_peer_answers() -> None:
    """RFC 6455: the server ends the connection after the peer's close, in one place.

    With hypercorn (0.18, Trio) an app that returned at once after its close raced the
    server's own answer to a close the client sent at the same moment, and the
    ``BusyResourceError`` of that race ended the worker process.
    """
    app = TrioAPI()

    @app.websocket("/bye")
    async def bye(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("bye")
        await websocket.close(4000)

    server = FakeServer("/bye")
    returned = trio.Event()

    async def serve() -> None:
        await server.serve(app)
        returned.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await server.closed.wait()
            # Messages still in flight from the peer are read and dropped meanwhile.
            await server.to_app.send({"type": "websocket.receive", "text": "late", "bytes": None})
            await trio.sleep(0.2)
            assert not returned.is_set(), "the app returned before the peer answered its close"
            await server.to_app.send({"type": "websocket.disconnect", "code": 4000})
            await returned.wait()
    assert server.closes() == [4000]


def _closes_at_once() -> TrioAPI:
    """An app whose ``/bye`` accepts and closes with 1000 at once."""
    app = TrioAPI()

    @app.websocket("/bye")
    async def bye(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    return app


async def test_a_peer_that_never_answers_the_close_is_left_after_close_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer("/bye")
    start = trio.current_time()
    with trio.fail_after(60):
        await server.serve(_closes_at_once())
    assert server.closes() == [1000]
    assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT)


async def test_a_handler_ended_by_the_peers_close_does_not_wait() -> None:
    app = TrioAPI()

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    server = FakeServer("/echo")
    server.to_app.send_nowait({"type": "websocket.disconnect", "code": 1000})
    with trio.fail_after(1):
        await server.serve(app)
    assert server.closes() == []


async def test_a_server_failing_the_receive_after_the_close_is_not_an_app_error() -> None:
    class Failing(FakeServer):
        async def receive(self) -> dict[str, Any]:
            if self.closed.is_set():
                raise RuntimeError("this server does not take a receive after a close")
            return await super().receive()

    server = Failing("/bye")
    with trio.fail_after(1):
        await server.serve(_closes_at_once())
    assert server.closes() == [1000]
