"""An app for live lifecycle tests; it prints what happens so the test can read the server's output."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from trioapi import Depends, TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.server import _process

if "LIFECYCLE_EXIT_AFTER_GOODBYE" in os.environ:  # a hypercorn worker signalled alone, sooner
    _process.EXIT_AFTER_GOODBYE = float(os.environ["LIFECYCLE_EXIT_AFTER_GOODBYE"])

app = TrioAPI()


async def resource() -> AsyncIterator[str]:
    print("setup", flush=True)
    try:
        yield "resource"
    finally:
        print("teardown", flush=True)


@app.websocket("/hold")
async def hold(websocket: WebSocket, res: str = Depends(resource)) -> None:
    await websocket.accept()
    await websocket.send_text("ready")
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect as exc:
        print(f"handler saw {exc.code}", flush=True)
        raise


@app.websocket("/echo/{name}")
async def echo(websocket: WebSocket, name: str) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        if text == "crash":
            raise RuntimeError(f"{name} crashed on purpose")
        await websocket.send_text(f"{name}:{text}")


@asynccontextmanager
async def failing_lifespan(app: TrioAPI) -> AsyncIterator[None]:
    raise ConnectionError("database at 127.0.0.1:1 is unreachable")
    yield


broken_app = TrioAPI(lifespan=failing_lifespan)
