"""trioapi echo app, written exactly like the basic example a user starts from.

``/ws`` echoes (accept, then receive_text/send_text in a loop).  Two fan-out routes, so the
hub can be compared with what tutorials do:

* ``/broadcast``: the naive loop, ``send_text`` to every connection in turn;
* ``/broadcast-hub``: ``trioapi.broadcast.ConnectionHub`` (bounded outbox and a sender task
  per member); every member, the sender included, receives each message.

And two JSON echoes (the load generator's ``--json 1`` messages, ``{"id": ..., "text": ...}``),
so typed messages can be compared with what they replace:

* ``/json``: ``receive_json`` / ``send_json``;
* ``/typed``: ``receive_model`` / ``send_model`` of an attrs class declared on the route.

Both loop as ``/ws`` does (``while True``), so the two differ only in the typed layer: an
``async for`` over ``iter_json``/``iter_models`` costs an async generator per message on top.

Run:  hypercorn bench.servers.trioapi_echo:app --worker-class trio --bind 127.0.0.1:PORT
      python -m trioapi run bench.servers.trioapi_echo:app --server native --port PORT
"""

from __future__ import annotations

import attrs

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.broadcast import ConnectionHub

app = TrioAPI()
hub = ConnectionHub()
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


@app.websocket("/broadcast-hub")
async def broadcast_hub(websocket: WebSocket) -> None:
    await websocket.accept()
    await hub.join("bench", websocket)
    try:
        while True:
            await hub.broadcast("bench", await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@app.websocket("/json")
async def json_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_json(await websocket.receive_json())
    except WebSocketDisconnect:
        pass


@attrs.frozen
class Echo:
    id: str
    text: str


@app.websocket("/typed", receives=Echo, sends=Echo)
async def typed_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_model(await websocket.receive_model())
    except WebSocketDisconnect:
        pass
