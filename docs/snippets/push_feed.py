"""A push-only handler written the FastAPI way, and the test that shows it ends when its client leaves.

Shown in the connection lifecycle guide; run by ``tests/test_snippets.py``.
"""

from __future__ import annotations

import itertools

import trio

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.testing import TestClient

app = TrioAPI()
ended: list[int] = []
finished = trio.Event()


@app.websocket("/feed")
async def feed(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        for n in itertools.count():  # ends with WebSocketDisconnect once the client has gone
            await websocket.send_json({"price": n})
            await trio.sleep(0.1)
    except WebSocketDisconnect as gone:
        ended.append(gone.code)
    finally:
        finished.set()


async def test_a_push_loop_ends_when_its_client_leaves(autojump_clock: trio.abc.Clock) -> None:
    async with TestClient(app) as client:
        async with client.websocket_connect("/feed") as ws:
            assert await ws.receive_json() == {"price": 0}
            await ws.close(1000)
        with trio.fail_after(2):  # the app notices within a second or so
            await finished.wait()
    assert ended == [1000]
