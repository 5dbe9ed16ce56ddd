"""An app for the live test of dependency teardown order (tests/test_dependency_scopes.py).

``/ws`` uses a request-scoped and a function-scoped sync generator dependency
(so setup and teardown run in worker threads) and logs their life; the
request-scoped teardown waits until ``/release`` is opened, so a client can
check that the final close frame came before it. ``/log`` sends the log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated

from trioapi import Depends, TrioAPI, WebSocket

app = TrioAPI()
log: list[str] = []
released = threading.Event()


def per_request() -> Iterator[None]:
    log.append("request setup")
    try:
        yield
    finally:
        released.wait(10)  # blocks a worker thread, never the event loop
        log.append("request teardown")


def per_function() -> Iterator[None]:
    log.append("function setup")
    try:
        yield
    finally:
        log.append("function teardown")


@app.websocket("/ws")
async def ws(
    websocket: WebSocket,
    r: Annotated[None, Depends(per_request)],
    f: Annotated[None, Depends(per_function, scope="function")],
) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    log.append("handler returns")


@app.websocket("/log")
async def send_log(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(",".join(log))


@app.websocket("/release")
async def release(websocket: WebSocket) -> None:
    released.set()
    await websocket.accept()
    await websocket.send_text("released")
