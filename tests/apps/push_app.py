"""A FastAPI-style push-only handler for live tests: it prints how it ended, for the test to read."""

from __future__ import annotations

import trio

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()


@app.websocket("/push")
async def push(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text("tick")
            await trio.sleep(0.05)
    except WebSocketDisconnect as exc:
        print(f"push ended {exc.code}", flush=True)
