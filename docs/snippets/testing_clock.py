"""Time and errors in tests, as the testing guide shows them; run by ``tests/test_snippets.py``."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioapi import TrioAPI, WebSocket
from trioapi.testing import TestClient

app = TrioAPI()


@app.websocket("/heartbeat")
async def heartbeat(websocket: WebSocket) -> None:
    await websocket.accept()
    for beat in range(3):
        await trio.sleep(60)  # a minute between beats
        await websocket.send_json({"beat": beat})


@app.websocket("/broken")
async def broken(websocket: WebSocket) -> None:
    await websocket.accept()
    raise RuntimeError("a bug")


async def test_three_minutes_pass_instantly(autojump_clock: trio.testing.MockClock) -> None:
    # The client's timeout counts virtual time too: make it longer than the app's waits.
    async with TestClient(app, timeout=600) as client, client.websocket_connect("/heartbeat") as ws:
        for beat in range(3):
            assert await ws.receive_json() == {"beat": beat}
        assert await ws.wait_closed() == (1000, "")
    assert trio.current_time() >= 180


async def test_a_bug_in_the_app_fails_the_test() -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        async with TestClient(app) as client, client.websocket_connect("/broken") as ws:
            await ws.wait_closed()


async def test_what_the_client_sees_when_the_app_fails() -> None:
    async with (
        TestClient(app, raise_server_exceptions=False) as client,
        client.websocket_connect("/broken") as ws,
    ):
        assert await ws.wait_closed() == (1011, "Internal Server Error")
