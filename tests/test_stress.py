"""A bounded stress test on every server: many connections, random order, some vanish; nothing leaks.

Uses the pytest plugin's ``live_server`` fixture, so the server runs in this
process and its registry, tasks and file descriptors can be inspected.
"""

from __future__ import annotations

import os
import random
import socket
import struct

import pytest
import trio
import trio.lowlevel
from apps import lifecycle_app
from test_lifecycle_live import _handshake
from trio_websocket import open_websocket_url

from trioapi import TrioAPI
from trioapi.pytest_plugin import LiveServer
from trioapi.server import ServerConfig

CONNECTIONS = 200


@pytest.fixture
def app() -> TrioAPI:
    return lifecycle_app.app


@pytest.fixture
def live_server_config() -> ServerConfig:
    # Hypercorn notices a reset connection only when it next writes to it: ping often.
    return ServerConfig(ping_interval=0.5, idle_timeout=2.0, graceful_timeout=2.0)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _task_count() -> int:
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def _polite_client(server: LiveServer, n: int, rng: random.Random) -> None:
    async with open_websocket_url(server.ws_url(f"/echo/s{n}")) as ws:
        for i in range(rng.randint(1, 5)):
            await ws.send_message(str(i))
            assert await ws.get_message() == f"s{n}:{i}"
            await trio.sleep(rng.random() / 50)


async def _vanishing_client(server: LiveServer) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    try:
        await _handshake(stream, "/echo/ghost")
    finally:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()


@pytest.mark.parametrize("live_server", ["hypercorn", "native", "trio-websocket"], indirect=True)
async def test_many_connections_in_random_order_leak_nothing(live_server: LiveServer, app: TrioAPI) -> None:
    rng = random.Random(1234)
    await trio.sleep(0.1)
    fds_before, tasks_before = _open_fds(), _task_count()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for n in range(CONNECTIONS):
                if rng.random() < 0.2:
                    nursery.start_soon(_vanishing_client, live_server)
                else:
                    nursery.start_soon(_polite_client, live_server, n, rng)
                if n % 20 == 0:
                    await trio.lowlevel.checkpoint()
        # Server-side closes finish just after the clients': wait for the registry to drain.
        while len(app.connections) or _open_fds() > fds_before or _task_count() > tasks_before:  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert len(app.connections) == 0
    assert _open_fds() <= fds_before
    assert _task_count() <= tasks_before
