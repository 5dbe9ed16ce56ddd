"""The connection's nursery and the stand-in reader, in memory: ``nursery.start``, when the nursery is there,
and messages the stand-in reads. Each connection running in a nursery of its own, and push loops
ending when their peer leaves, are in the contract suite, on every server."""

from __future__ import annotations

import trio
import trio.testing

from trioapi import TrioAPI, WebSocket
from trioapi._connection import IDLE_CHECK_INTERVAL
from trioapi.testing import TestClient


async def test_the_connections_nursery_takes_nursery_start() -> None:
    app = TrioAPI()

    async def ready_then_wait(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started("started")
        await trio.sleep_forever()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.nursery.start(ready_then_wait))

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_text() == "started"
        # The handler returned: its nursery cancelled the task and the connection closed.
        assert await ws.wait_closed() == (1000, "")


async def test_the_nursery_is_only_there_while_the_handler_runs() -> None:
    app = TrioAPI()
    kept: list[WebSocket] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        kept.append(websocket)
        await websocket.accept()

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.wait_closed()
    try:
        kept[0].start_soon(trio.sleep, 1)
    except RuntimeError as exc:
        assert "only open while a handler" in str(exc)
    else:
        raise AssertionError("start_soon after the handler ended should fail")


async def test_messages_read_by_the_stand_in_are_not_lost(autojump_clock: trio.testing.MockClock) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await trio.sleep(3)  # busy elsewhere: a stand-in reads meanwhile
        await websocket.send_text(",".join([await websocket.receive_text() for _ in range(3)]))

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        for text in ("a", "b", "c"):
            await ws.send_text(text)
        assert await ws.receive_text() == "a,b,c"


async def test_a_handler_receiving_again_takes_over_from_the_stand_in(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await trio.sleep(3)  # a stand-in starts and waits for a message that does not come
        await websocket.send_text("back")
        await websocket.send_text(await websocket.receive_text())

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert await ws.receive_text() == "back"
        await ws.send_text("echo me")
        assert await ws.receive_text() == "echo me"


async def test_a_handler_returning_as_the_idle_check_runs_gets_no_stand_in_started_too_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A nursery whose body has ended is closed to new tasks before its exit's last
    # schedule point: an idle check that ran there and started a stand-in reader
    # crashed the app. Handlers that return exactly on an idle check's tick, 20 at
    # once, in the order Trio's scheduler picks, meet that moment.
    app = TrioAPI()
    start = trio.current_time()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await trio.sleep_until(start + 2 * IDLE_CHECK_INTERVAL)  # idle at the second look: done

    async with TestClient(app) as client:
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(connect_until_closed, client)
        async with client.websocket_connect("/ws") as ws:  # the app still serves
            assert await ws.wait_closed() == (1000, "")


async def connect_until_closed(client: TestClient) -> None:
    async with client.websocket_connect("/ws") as ws:
        assert await ws.wait_closed() == (1000, "")
