"""pytest fixtures for trioapi apps (registered through the ``pytest11`` entry point).

Define an ``app`` fixture in your tests, then ask for:

- ``client``: an in-memory ``TestClient`` with the lifespan running;
- ``live_server``: the app served on an ephemeral 127.0.0.1 port in the test's
  nursery (with the limits of the ``live_server_config`` fixture), once on each
  server: hypercorn, trio-websocket and the native engine (narrow it with
  ``@pytest.mark.parametrize("live_server", ["native"], indirect=True)``), so a
  test can connect with trio-websocket's own client to ``live_server.ws_url("/ws")``.

Both need pytest-trio (``trio_mode = true``, or mark tests ``@pytest.mark.trio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import attrs
import pytest
import trio

from trioapi.server import ServerConfig, serve
from trioapi.testing import TestClient

__all__ = ["LiveServer", "client", "live_server", "live_server_config"]


@attrs.frozen
class LiveServer:
    """A running server: its ``kind`` ("hypercorn", "trio-websocket" or "native"), host and port."""

    kind: str
    host: str
    port: int
    _stop: trio.Event

    def ws_url(self, path: str = "/") -> str:
        """``ws://host:port/path``."""
        return f"ws://{self.host}:{self.port}{path}"

    def http_url(self, path: str = "/") -> str:
        """``http://host:port/path`` (hypercorn only: trio-websocket and native answer 426)."""
        return f"http://{self.host}:{self.port}{path}"

    def stop(self) -> None:
        """Start a graceful shutdown now (open WebSockets get 1001)."""
        self._stop.set()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[TestClient]:
    """An in-memory ``TestClient`` for the ``app`` fixture, lifespan included."""
    async with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def live_server_config() -> ServerConfig:
    """The limits ``live_server`` serves with; override this fixture to change them."""
    return ServerConfig(graceful_timeout=2.0)


@pytest.fixture(params=["hypercorn", "trio-websocket", "native"])
async def live_server(
    app: Any, live_server_config: ServerConfig, request: pytest.FixtureRequest, nursery: trio.Nursery
) -> AsyncIterator[LiveServer]:
    """Serve the ``app`` fixture on 127.0.0.1 and an ephemeral port for the test's duration."""
    stop = trio.Event()
    config = live_server_config
    port = await nursery.start(
        partial(
            serve,
            app,
            host="127.0.0.1",
            port=0,
            server=request.param,
            config=config,
            shutdown_trigger=stop.wait,
        )
    )
    yield LiveServer(request.param, "127.0.0.1", port, stop)
    stop.set()
