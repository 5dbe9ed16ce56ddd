"""ConnectionHub: rooms, personal messages, pruning, and slow consumers that cannot stall a room."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
import trio.testing

from trioapi import TrioAPI, WebSocket
from trioapi.broadcast import Broadcast, ConnectionHub, ConnectionManager, OverflowPolicy, PolicyName
from trioapi.testing import TestClient, WebSocketTestSession


def chat_app(hub: ConnectionHub) -> tuple[TrioAPI, dict[str, WebSocket]]:
    """A chat on ``hub``, and the server-side WebSocket of each client by name.

    ``/leave`` leaves the room, ``/me <text>`` is answered to the sender alone,
    ``/json`` and ``/bytes`` broadcast a dict and bytes; anything else is
    broadcast as ``name: text``.
    """
    app = TrioAPI()
    sockets: dict[str, WebSocket] = {}

    @app.websocket("/rooms/{room}/{name}")
    async def chat(websocket: WebSocket, room: str, name: str) -> None:
        await websocket.accept()
        sockets[name] = websocket
        await hub.join(room, websocket)
        async for text in websocket.iter_text():
            if text == "/leave":
                hub.leave(room, websocket)
            elif text.startswith("/me "):
                await hub.send_personal(websocket, text[4:])
            elif text == "/json":
                await hub.broadcast(room, {"from": name, "n": [1, 2]})
            elif text == "/bytes":
                await hub.broadcast(room, b"\x00\x01")
            else:
                await hub.broadcast(room, f"{name}: {text}")

    return app, sockets


async def settle() -> None:
    """Let every task run until all are blocked: messages in flight have been delivered."""
    await trio.testing.wait_all_tasks_blocked()


async def test_a_broadcast_reaches_every_member_of_the_room_and_no_one_else() -> None:
    hub = ConnectionHub()
    app, _ = chat_app(hub)
    async with (
        TestClient(app) as client,
        client.websocket_connect("/rooms/a/ann") as ann,
        client.websocket_connect("/rooms/a/bob") as bob,
        client.websocket_connect("/rooms/b/cid") as cid,
    ):
        await settle()
        assert sorted(hub.rooms) == ["a", "b"]
        assert len(hub.members("a")) == 2
        await ann.send_text("hi")
        assert await ann.receive_text() == "ann: hi"
        assert await bob.receive_text() == "ann: hi"
        await cid.send_text("only b")
        assert await cid.receive_text() == "cid: only b"
        await settle()
        assert hub.member(hub.members("a")[0]).backlog == 0  # type: ignore[union-attr]


async def test_json_goes_out_as_a_text_frame_and_bytes_as_a_binary_frame() -> None:
    hub = ConnectionHub()
    app, _ = chat_app(hub)
    async with TestClient(app) as client, client.websocket_connect("/rooms/a/ann") as ann:
        await ann.send_text("/json")
        assert await ann.receive_text() == '{"from":"ann","n":[1,2]}'
        await ann.send_text("/bytes")
        assert await ann.receive_bytes() == b"\x00\x01"


async def test_send_personal_reaches_only_that_connection_in_order_with_broadcasts() -> None:
    hub = ConnectionHub()
    app, _ = chat_app(hub)
    async with (
        TestClient(app) as client,
        client.websocket_connect("/rooms/a/ann") as ann,
        client.websocket_connect("/rooms/a/bob") as bob,
    ):
        await ann.send_text("/me secret")
        await ann.send_text("public")
        assert await ann.receive_text() == "secret"
        assert await ann.receive_text() == "ann: public"
        assert await bob.receive_text() == "ann: public"


async def test_a_member_that_disconnects_is_pruned_and_later_broadcasts_do_not_fail() -> None:
    hub = ConnectionHub()
    app, _ = chat_app(hub)
    async with TestClient(app) as client, client.websocket_connect("/rooms/a/ann") as ann:
        async with client.websocket_connect("/rooms/a/bob") as bob:
            await bob.vanish()
        await settle()
        assert len(hub.members("a")) == 1
        assert len(hub) == 1
        await ann.send_text("still here")
        assert await ann.receive_text() == "ann: still here"
    await settle()
    assert hub.rooms == []
    assert len(hub) == 0


async def test_a_member_that_only_listens_is_pruned_when_its_peer_goes() -> None:
    hub = ConnectionHub()
    app = TrioAPI()

    @app.websocket("/listen")
    async def listen(websocket: WebSocket) -> None:
        await websocket.accept()
        await hub.join("news", websocket)
        await websocket.wait_disconnected()

    async with TestClient(app) as client:
        async with client.websocket_connect("/listen") as listener:
            await settle()
            await hub.broadcast("news", "flash")
            assert await listener.receive_text() == "flash"
            assert hub.rooms == ["news"]
        await settle()
        assert hub.rooms == []


async def test_leave_stops_delivery_to_that_member_only() -> None:
    hub = ConnectionHub()
    app, _ = chat_app(hub)
    async with (
        TestClient(app) as client,
        client.websocket_connect("/rooms/a/ann") as ann,
        client.websocket_connect("/rooms/a/bob") as bob,
    ):
        await bob.send_text("/leave")
        await settle()
        await ann.send_text("after")
        assert await ann.receive_text() == "ann: after"
        await bob.send_text("/me still reachable")
        assert await bob.receive_text() == "still reachable"
        assert len(hub.members("a")) == 1


async def test_joining_before_accept_says_to_accept_first() -> None:
    hub = ConnectionHub()
    app = TrioAPI()
    errors: list[BaseException] = []

    @app.websocket("/early")
    async def early(websocket: WebSocket) -> None:
        try:
            await hub.join("a", websocket)
        except RuntimeError as exc:
            errors.append(exc)
        await websocket.close()

    async with TestClient(app) as client:
        with pytest.raises(Exception):  # noqa: B017 -- the handshake is refused; the error is what we check
            async with client.websocket_connect("/early"):
                pass
    assert "accept()" in str(errors[0])


def test_connection_manager_is_the_hub() -> None:
    assert ConnectionManager is ConnectionHub


def test_invalid_hub_settings_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="max_backlog"):
        ConnectionHub(max_backlog=0)
    with pytest.raises(ValueError):
        ConnectionHub(policy="sometimes")  # type: ignore[arg-type]


# --8<-- [start:two_hubs]
async def test_hubs_sharing_a_broadcast_deliver_to_each_others_members() -> None:
    """Two hubs on one Broadcast stand for two worker processes sharing Redis."""
    async with Broadcast("memory://") as broadcast:
        hub_one, hub_two = ConnectionHub(broadcast), ConnectionHub(broadcast)
        app_one, _ = chat_app(hub_one)
        app_two, _ = chat_app(hub_two)
        async with (
            TestClient(app_one) as one,
            TestClient(app_two) as two,
            one.websocket_connect("/rooms/a/ann") as ann,
            two.websocket_connect("/rooms/a/bob") as bob,
        ):
            await settle()
            assert broadcast.channels == ["trioapi.hub:a"]
            await ann.send_text("across")
            assert await bob.receive_text() == "ann: across"
            assert await ann.receive_text() == "ann: across"
        await settle()
        assert broadcast.channels == []
        # --8<-- [end:two_hubs]


# -- slow consumers --------------------------------------------------------------


class StuckClient:
    """A raw ASGI client whose network is stuck: it accepts, then never reads.

    The app's first data frame to it never completes (as a send to a peer with a
    full TCP window); a close frame is recorded, then the app sees the disconnect.
    """

    def __init__(self, path: str) -> None:
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50001),
            "server": ("testserver", 80),
            "subprotocols": [],
            "state": {},
            "extensions": {},
        }
        self.connected = False
        self.send_blocked = trio.Event()
        self.close_code: int | None = None
        self._closed = trio.Event()

    async def receive(self) -> dict[str, Any]:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        await self._closed.wait()
        return {"type": "websocket.disconnect", "code": self.close_code}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self.send_blocked.set()
            await trio.sleep_forever()
        elif message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self._closed.set()


async def run_slow_consumer_scenario(policy: PolicyName) -> dict[str, Any]:
    """50 fast clients and one stuck client in a room; 200 messages in bursts of 8.

    Returns what the fast clients received, the stuck member's largest backlog,
    its final record and the stuck client's close code.
    """
    max_backlog, burst, total = 16, 8, 200
    hub = ConnectionHub(max_backlog=max_backlog, policy=policy)
    app, sockets = chat_app(hub)
    stuck = StuckClient("/rooms/r/stuck")
    received: dict[int, list[str]] = {}
    peak_backlog = 0

    async def read_all(index: int, session: WebSocketTestSession) -> None:
        received[index] = [await session.receive_text() for _ in range(total)]

    with trio.fail_after(30):
        async with TestClient(app) as client, trio.open_nursery() as server, AsyncExitStack() as stack:
            server.start_soon(app, stuck.scope, stuck.receive, stuck.send)
            sessions = [
                await stack.enter_async_context(client.websocket_connect(f"/rooms/r/fast{i}"))
                for i in range(50)
            ]
            await settle()
            assert len(hub.members("r")) == 51
            async with trio.open_nursery() as readers:
                for i, session in enumerate(sessions):
                    readers.start_soon(read_all, i, session)
                for start in range(0, total, burst):
                    for n in range(start, start + burst):
                        await hub.broadcast("r", f"m{n}")
                        record = hub.member(sockets["stuck"])
                        if record is not None:
                            peak_backlog = max(peak_backlog, record.backlog)
                    await settle()  # the fast clients keep up between bursts; the stuck one cannot
            result = {
                "received": received,
                "peak_backlog": peak_backlog,
                "stuck_member": hub.member(sockets["stuck"]),
                "stuck_close_code": stuck.close_code,
                "members": len(hub.members("r")),
            }
            server.cancel_scope.cancel()
    return result


async def test_a_stuck_client_is_closed_with_1013_while_fast_clients_get_every_message() -> None:
    result = await run_slow_consumer_scenario("disconnect")
    expected = [f"m{n}" for n in range(200)]
    assert all(messages == expected for messages in result["received"].values())
    assert len(result["received"]) == 50
    assert result["stuck_close_code"] == 1013
    assert result["stuck_member"] is None  # pruned from the hub
    assert result["members"] == 50
    assert result["peak_backlog"] <= 16


async def test_a_stuck_client_under_drop_oldest_keeps_a_bounded_outbox_and_counts_drops() -> None:
    result = await run_slow_consumer_scenario("drop_oldest")
    expected = [f"m{n}" for n in range(200)]
    assert all(messages == expected for messages in result["received"].values())
    member = result["stuck_member"]
    assert member.policy is OverflowPolicy.DROP_OLDEST
    assert member.backlog == 16
    # One frame is stuck in the socket send, sixteen wait; the rest were dropped.
    assert member.dropped == 200 - 16 - 1
    assert result["stuck_close_code"] is None
    assert result["peak_backlog"] == 16


# -- the ticker example (the chat example is tested by docs/snippets/chat_test.py) ---


async def test_the_ticker_example_pushes_ticks_and_stops_when_the_client_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from examples import ticker

    monkeypatch.setattr(ticker, "TICK_SECONDS", 0.01)
    async with TestClient(ticker.app) as client:
        async with client.websocket_connect("/ticks") as ws:
            first = (await ws.receive_json())["tick"]
            assert (await ws.receive_json())["tick"] == first + 1
            await ws.vanish()
        await settle()
        assert ticker.broadcast.channels == []
