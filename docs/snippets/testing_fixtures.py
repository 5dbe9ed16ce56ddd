"""The pytest plugin's fixtures, as the testing guide shows them; run by ``tests/test_snippets.py``."""

from __future__ import annotations

import pytest
from trio_websocket import open_websocket_url

from trioapi import TrioAPI, WebSocket
from trioapi.pytest_plugin import LiveServer
from trioapi.testing import TestClient


@pytest.fixture
def app() -> TrioAPI:
    app = TrioAPI()

    @app.websocket("/ws")
    async def shout(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text.upper())

    return app


async def test_in_memory(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "HELLO"


async def test_on_a_real_server(live_server: LiveServer) -> None:
    # Runs twice: once on hypercorn, once on the native transport.
    async with open_websocket_url(live_server.ws_url("/ws")) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "HELLO"
