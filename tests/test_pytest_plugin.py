"""The pytest plugin's fixtures, used the way an app's own test suite would use them."""

from __future__ import annotations

import pytest
from trio_websocket import open_websocket_url

from examples import basic
from trioapi import TrioAPI
from trioapi.pytest_plugin import LiveServer
from trioapi.testing import TestClient

pytest_plugins = ["pytester"]


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


def test_live_server_serves_the_app_on_every_server_by_default(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        """
        import pytest
        from trioapi import TrioAPI

        @pytest.fixture
        def app():
            return TrioAPI()

        async def test_kind(live_server):
            pass
        """
    )
    result = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    collected = sorted(line for line in result.outlines if line.startswith("test_"))
    kinds = ["hypercorn", "native", "trio-websocket"]
    assert collected == [
        f"test_live_server_serves_the_app_on_every_server_by_default.py::test_kind[{k}]" for k in kinds
    ]
