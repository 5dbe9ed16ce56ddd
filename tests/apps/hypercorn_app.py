"""The app of ``tests/test_hypercorn_serving.py``: echo, two send-only routes, and HTTP routes.

``make_app()`` makes a fresh app and the ``Ending`` its send-only handlers report
to; ``app`` is one, for servers started as processes (the handlers also print
how they ended, for the test to read).
"""

from __future__ import annotations

import trio

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.requests import Request
from trioapi.responses import PlainTextResponse


class Ending:
    """How a send-only handler ended: the ``WebSocketDisconnect`` it saw (if any), once it has."""

    def __init__(self) -> None:
        self.seen: list[WebSocketDisconnect] = []
        self.done = trio.Event()

    def saw(self, exc: WebSocketDisconnect) -> None:
        self.seen.append(exc)
        print(f"push ended {exc.code}", flush=True)


def make_app() -> tuple[TrioAPI, Ending]:
    """Echo (also ``/chat``, with a subprotocol), two send-only routes (``/push``, ``/flood``),
    and HTTP routes (``/health``, ``/body``)."""
    app = TrioAPI()
    ending = Ending()

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_text():
            await websocket.send_text(message)

    @app.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="chat.v1", headers=[(b"x-room", b"lobby")])
        async for message in websocket.iter_text():
            await websocket.send_text(message)

    @app.websocket("/push")
    async def push(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:  # as FastAPI's examples have it
                await websocket.send_text("tick")
                await trio.sleep(0.05)
        except WebSocketDisconnect as exc:
            ending.saw(exc)
        finally:
            ending.done.set()

    @app.websocket("/flood")
    async def flood(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:  # no other await: only the sends let another task run
                await websocket.send_text("x" * 1000)
        except WebSocketDisconnect as exc:
            ending.saw(exc)
        finally:
            ending.done.set()

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.post("/body")
    async def body(request: Request) -> PlainTextResponse:
        return PlainTextResponse((await request.body()).decode())

    return app, ending


app, _ = make_app()
