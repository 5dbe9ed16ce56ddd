"""FastAPI echo app (optional: only when the ``bench`` extra is installed).

The same canonical loop as ``trioapi_echo``: ``/ws`` echoes, ``/broadcast`` fans out with a
naive send loop.  Run by hypercorn ``--worker-class trio`` (FastAPI on trio via anyio) and by
uvicorn (asyncio, what most FastAPI users run).
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
_subscribers: set[WebSocket] = set()


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(data)
    except WebSocketDisconnect:
        pass


@app.websocket("/broadcast")
async def broadcast_naive(websocket: WebSocket) -> None:
    await websocket.accept()
    _subscribers.add(websocket)
    try:
        while True:
            data = await websocket.receive_text()
            for other in list(_subscribers):
                try:
                    await other.send_text(data)
                except Exception:
                    _subscribers.discard(other)
    except WebSocketDisconnect:
        pass
    finally:
        _subscribers.discard(websocket)
