"""A push-only feed: the server ticks, every connected client receives each tick.

Run it with ``hypercorn --worker-class trio examples.ticker:app`` and connect to
``ws://127.0.0.1:8000/ticks``.

The handler never receives, so it would not notice a client that went away; it
waits for the disconnect (``wait_disconnected``) while a task started with
``websocket.start_soon`` pushes the ticks. When the client goes, the handler
returns and trioapi cancels the pusher with the connection.

Each worker process ticks its own clients (the ``memory://`` default). Behind
``redis://`` every worker would publish its own ticks to all workers' clients,
so keep a single publisher there.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.broadcast import Broadcast, Subscriber

TICK_SECONDS = float(os.environ.get("TICK_SECONDS", "1"))

broadcast = Broadcast(os.environ.get("BROADCAST_URL", "memory://"))


async def tick() -> None:
    for n in itertools.count():
        await broadcast.publish("ticks", {"tick": n})
        await trio.sleep(TICK_SECONDS)


@asynccontextmanager
async def lifespan(app: TrioAPI) -> AsyncIterator[None]:
    async with broadcast, trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        yield
        nursery.cancel_scope.cancel()


app = TrioAPI(lifespan=lifespan)


async def push(subscriber: Subscriber, websocket: WebSocket) -> None:
    try:
        async for event in subscriber:
            await websocket.send_json(event.message)
    except WebSocketDisconnect:
        pass  # the client left mid-send; the handler's wait_disconnected returns too


@app.websocket("/ticks")
async def ticks(websocket: WebSocket) -> None:
    await websocket.accept()
    # A client that cannot keep up only needs the latest ticks: keep the 10 newest.
    async with broadcast.subscribe("ticks", max_backlog=10, policy="drop_oldest") as subscriber:
        websocket.start_soon(push, subscriber, websocket)
        await websocket.wait_disconnected()
