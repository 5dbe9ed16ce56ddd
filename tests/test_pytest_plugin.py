"""The pytest plugin's fixtures, used the way an app's own test suite would use them."""

from __future__ import annotations

import pytest
from trio_websocket import ConnectionRejected, open_websocket_url

from examples import basic
from trioapi import TrioAPI
from trioapi.pytest_plugin import LiveServer
from trioapi.testing import TestClient


@pytest.fixture
def app() -> TrioAPI:
    return basic.app


async def test_client_fixture_talks_to_the_app_in_memory(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        await ws.send_text("in memory")
        assert await ws.receive_text() == "Message text was: in memory"


async def test_live_server_fixture_serves_a_real_socket(live_server: LiveServer) -> None:
    async with open_websocket_url(live_server.ws_url("/ws")) as ws:
        await ws.send_message("over TCP")
        assert await ws.get_message() == "Message text was: over TCP"


async def test_live_server_rejects_unknown_paths_with_404(live_server: LiveServer) -> None:
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(live_server.ws_url("/missing")):
            pass
    assert info.value.status_code == 404
