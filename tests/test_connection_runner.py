"""The connection runner at the ASGI level: a server's cancellation is a goodbye, the handler's is not."""

from __future__ import annotations

import math
from typing import Any

import trio

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect


class FakeServer:
    """Drives ``app`` for one WebSocket the way an ASGI server does, recording what it sends."""

    def __init__(self, path: str) -> None:
        self.to_app, self._inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.sent: list[dict[str, Any]] = []
        self.accepted = trio.Event()
        self.scope: dict[str, Any] = {
            "type": "websocket",
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


async def test_a_connection_ends_only_after_its_tasks_have() -> None:
    app = TrioAPI()
    finished: list[str] = []

    async def background(websocket: WebSocket) -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.01)  # cleanup that takes a moment
            finished.append("task")

    @app.websocket("/tasks")
    async def tasks(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.start_soon(background, websocket)
        await websocket.receive_text()

    server = FakeServer("/tasks")
    server.to_app.send_nowait({"type": "websocket.receive", "text": "bye", "bytes": None})
    with trio.fail_after(5):
        await server.serve(app)
        finished.append("connection")
    assert finished == ["task", "connection"]
    assert server.closes() == [1000]
