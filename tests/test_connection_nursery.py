"""SPEC section 4: each connection runs in a nursery of its own, and a handler that only sends learns
that its peer has gone. In memory here; the same behaviours on every server are in the contract suite."""

from __future__ import annotations

import trio
import trio.testing

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.testing import TestClient


async def test_start_soon_tasks_are_children_of_their_own_connections_nursery() -> None:
    app = TrioAPI()
    seen: dict[str, tuple[trio.Nursery, trio.lowlevel.Task, trio.Nursery | None, trio.lowlevel.Task]] = {}

    async def task(websocket: WebSocket, name: str, done: trio.Event) -> None:
        me = trio.lowlevel.current_task()
        handler_nursery = websocket.nursery
        seen[name] = (handler_nursery, handler_nursery.parent_task, me.parent_nursery, me)
        done.set()
        await trio.sleep_forever()

    @app.websocket("/ws/{name}")
    async def endpoint(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        done = trio.Event()
        websocket.start_soon(task, websocket, name, done)
        await done.wait()
        assert seen[name][1] is trio.lowlevel.current_task()  # the nursery's owner is this handler
        await websocket.send_text("ok")
        await websocket.receive_text()

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws/a") as a, client.websocket_connect("/ws/b") as b:
            assert await a.receive_text() == "ok"
            assert await b.receive_text() == "ok"
            nursery_a, owner_a, parent_a, _ = seen["a"]
            nursery_b, owner_b, parent_b, _ = seen["b"]
            assert parent_a is nursery_a and parent_b is nursery_b
            assert nursery_a is not nursery_b and owner_a is not owner_b
            assert nursery_a is not app.nursery and nursery_b is not app.nursery


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


async def test_a_fastapi_style_push_loop_ends_when_the_client_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # No wait_disconnected, no receive: the registry's stand-in reader sees the close for it.
    app = TrioAPI()
    outcome: list[int] = []
    ended = trio.Event()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text("tick")
                await trio.sleep(0.1)
        except WebSocketDisconnect as exc:
            outcome.append(exc.code)
        finally:
            ended.set()

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_text() == "tick"
            await ws.close(4001)
        with trio.fail_after(2):  # two looks of the registry, at most
            await ended.wait()
        assert outcome == [4001]
        assert len(app.connections) == 0


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
