"""SPEC section 1, driven at the ASGI level: ``WebSocket(scope, receive, send)`` with no app."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

from trioapi.websockets import (
    READ_AHEAD_LIMIT,
    READ_AHEAD_SIZE,
    InvalidMessageData,
    UnexpectedMessageType,
    WebSocket,
    WebSocketDisconnect,
    WebSocketState,
    truncate_reason,
)


class Peer:
    """The server side of a fake ASGI connection: what the app sent, and what it will receive."""

    def __init__(self, *, denial: bool = True) -> None:
        self.to_app, self._inbox = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.sent: list[dict[str, Any]] = []
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "scheme": "ws",
            "path": "/chat",
            "query_string": b"room=a&tag=x&tag=y",
            "headers": [(b"host", b"example.com:8080"), (b"cookie", b"session=abc; theme=dark")],
            "client": ("10.0.0.1", 5555),
            "server": ("example.com", 8080),
            "subprotocols": ["v1", "v2"],
            "path_params": {"room": "a"},
            "extensions": {"websocket.http.response": {}} if denial else {},
        }

    async def receive(self) -> dict[str, Any]:
        return await self._inbox.receive()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def websocket(self) -> WebSocket:
        self.to_app.send_nowait({"type": "websocket.connect"})
        return WebSocket(self.scope, self.receive, self.send)

    def client_sends(self, text: str | None = None, data: bytes | None = None) -> None:
        # Hypercorn's shape: both keys, one of them None.
        self.to_app.send_nowait({"type": "websocket.receive", "text": text, "bytes": data})

    def client_closes(self, code: int = 1000, reason: str = "") -> None:
        self.to_app.send_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})


@pytest.fixture
def peer() -> Peer:
    return Peer()


async def test_accept_sends_subprotocol_and_headers(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept(subprotocol="v2", headers=[(b"x-server", b"trioapi")])
    assert peer.sent == [
        {"type": "websocket.accept", "subprotocol": "v2", "headers": [(b"x-server", b"trioapi")]}
    ]
    assert ws.client_state is WebSocketState.CONNECTED
    assert ws.application_state is WebSocketState.CONNECTED
    assert ws.accepted_subprotocol == "v2"


async def test_accept_with_a_subprotocol_the_client_did_not_offer_is_an_error(peer: Peer) -> None:
    ws = peer.websocket()
    with pytest.raises(RuntimeError, match="offered"):
        await ws.accept(subprotocol="v9")
    assert peer.sent == []


@pytest.mark.parametrize("call", ["receive_text", "receive_bytes", "receive_json"])
async def test_receive_before_accept_is_an_error(peer: Peer, call: str) -> None:
    ws = peer.websocket()
    with pytest.raises(RuntimeError, match="accept"):
        await getattr(ws, call)()


async def test_text_bytes_and_json_round_trip(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    peer.client_sends(text="hello")
    peer.client_sends(data=b"\x00\x01")
    peer.client_sends(text='{"a": [1, 2]}')
    peer.client_sends(data='{"é": true}'.encode())
    assert await ws.receive_text() == "hello"
    assert await ws.receive_bytes() == b"\x00\x01"
    assert await ws.receive_json() == {"a": [1, 2]}
    assert await ws.receive_json(mode="binary") == {"é": True}


async def test_send_json_is_compact_utf8_and_keeps_non_ascii(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    await ws.send_json({"name": "Zoë", "n": [1, 2]})
    await ws.send_json({"name": "Zoë"}, mode="binary")
    assert peer.sent[1] == {"type": "websocket.send", "text": '{"name":"Zoë","n":[1,2]}'}
    assert peer.sent[2] == {"type": "websocket.send", "bytes": '{"name":"Zoë"}'.encode()}


async def test_bad_json_mode_is_an_error(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    with pytest.raises(RuntimeError, match='"text" or "binary"'):
        await ws.send_json({}, mode="xml")


async def test_wrong_frame_type_is_a_1003_error(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    peer.client_sends(data=b"raw")
    with pytest.raises(UnexpectedMessageType) as info:
        await ws.receive_text()
    assert info.value.code == 1003
    peer.client_sends(text="text")
    with pytest.raises(UnexpectedMessageType):
        await ws.receive_bytes()


async def test_invalid_json_is_a_1007_error(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    peer.client_sends(text="{bad")
    with pytest.raises(InvalidMessageData) as info:
        await ws.receive_json()
    assert info.value.code == 1007
    assert isinstance(info.value, ValueError)


async def test_invalid_utf8_in_binary_json_is_a_1007_error(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    peer.client_sends(data=b"\xff\xfe")
    with pytest.raises(InvalidMessageData, match="UTF-8"):
        await ws.receive_json(mode="binary")


async def test_peer_disconnect_raises_on_receive_and_then_on_send(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    peer.client_closes(4002, "bye")
    with pytest.raises(WebSocketDisconnect) as info:
        await ws.receive_text()
    assert (info.value.code, info.value.reason) == (4002, "bye")
    assert ws.client_state is WebSocketState.DISCONNECTED
    with pytest.raises(WebSocketDisconnect) as again:
        await ws.send_text("anyone?")
    assert again.value.code == 4002
    with pytest.raises(WebSocketDisconnect):
        await ws.receive_bytes()


async def test_iterators_end_cleanly_when_the_peer_leaves(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    peer.client_sends(text="a")
    peer.client_sends(text="b")
    peer.client_closes()
    assert [text async for text in ws.iter_text()] == ["a", "b"]


async def test_iter_json_and_iter_bytes(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    peer.client_sends(text="[1]")
    peer.client_closes()
    assert [item async for item in ws.iter_json()] == [[1]]
    assert [item async for item in ws.iter_bytes()] == []


async def test_close_is_idempotent_and_send_after_close_is_an_error(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    await ws.close(4000, "done")
    await ws.close()
    assert [m for m in peer.sent if m["type"] == "websocket.close"] == [
        {"type": "websocket.close", "code": 4000, "reason": "done"}
    ]
    with pytest.raises(RuntimeError, match="closed by the application"):
        await ws.send_text("late")
    assert ws.application_state is WebSocketState.DISCONNECTED


async def test_receive_after_the_app_closed_ends_like_a_disconnect(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    await ws.close(1013, "too slow")
    with pytest.raises(WebSocketDisconnect) as info:
        await ws.receive_text()
    assert (info.value.code, info.value.reason) == (1013, "too slow")
    assert [text async for text in ws.iter_text()] == []


async def test_close_before_accept_rejects_the_handshake(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.close()
    assert peer.sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]
    assert ws.application_state is WebSocketState.DISCONNECTED


async def test_long_close_reason_is_cut_at_a_character_boundary(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    await ws.close(1000, "é" * 100)
    reason = peer.sent[-1]["reason"]
    assert len(reason.encode()) <= 123
    assert reason == "é" * 61


def test_truncate_reason_keeps_short_reasons() -> None:
    assert truncate_reason("short") == "short"
    assert truncate_reason(None) == ""
    assert len(truncate_reason("x" * 500).encode()) == 123


async def test_deny_sends_an_http_response(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.deny(401, [(b"www-authenticate", b"Bearer")], b'{"detail":"no"}')
    assert peer.sent[0] == {
        "type": "websocket.http.response.start",
        "status": 401,
        "headers": [(b"www-authenticate", b"Bearer")],
    }
    assert peer.sent[1]["body"] == b'{"detail":"no"}'
    assert ws.application_state is WebSocketState.RESPONSE


async def test_deny_without_the_extension_falls_back_to_a_close() -> None:
    peer = Peer(denial=False)
    ws = peer.websocket()
    await ws.deny(401)
    assert peer.sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


async def test_handshake_properties(peer: Peer) -> None:
    ws = peer.websocket()
    assert str(ws.url) == "ws://example.com:8080/chat?room=a&tag=x&tag=y"
    assert ws.url.path == "/chat"
    assert ws.url.port == 8080
    assert ws.headers["HOST"] == "example.com:8080"
    assert ws.query_params["room"] == "a"
    assert ws.query_params.getlist("tag") == ["x", "y"]
    assert ws.path_params == {"room": "a"}
    assert ws.cookies == {"session": "abc", "theme": "dark"}
    assert ws.client is not None
    assert (ws.client.host, ws.client.port) == ("10.0.0.1", 5555)
    assert ws.subprotocols == ["v1", "v2"]
    ws.state.user = "zoe"
    assert ws.state.user == "zoe"
    with pytest.raises(AttributeError, match="nope"):
        _ = ws.state.nope


async def test_wait_disconnected_returns_when_the_peer_leaves_without_losing_messages(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    peer.client_sends(text="kept")
    peer.client_closes(1001)
    disconnect = await ws.wait_disconnected()
    assert disconnect.code == 1001
    # The message read ahead is still delivered, then the disconnect.
    assert await ws.receive_text() == "kept"
    with pytest.raises(WebSocketDisconnect):
        await ws.receive_text()


@pytest.mark.parametrize(
    ("count", "size", "left_unread"),
    [(70, 10, 70 - READ_AHEAD_LIMIT), (5, 400 * 1024, 2)],
    ids=["many-small-messages", "few-large-messages"],
)
async def test_reading_ahead_stops_at_a_bound_in_messages_and_in_size(
    peer: Peer, count: int, size: int, left_unread: int
) -> None:
    # A handler that does not receive must not make the server hold whatever the client
    # sends: 64 messages, or 1 MiB of them (three of 400 KiB), then TCP pushes back.
    assert READ_AHEAD_SIZE == 1024 * 1024
    ws = peer.websocket()
    await ws.accept()
    for number in range(count):
        peer.client_sends(text=f"{number:<{size}}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.wait_disconnected)
        await trio.testing.wait_all_tasks_blocked()
        assert peer.to_app.statistics().current_buffer_used == left_unread
        peer.client_closes(1000)
        # The handler gets every message, in order, then the disconnect.
        assert [int(await ws.receive_text()) for _ in range(count)] == list(range(count))
    with pytest.raises(WebSocketDisconnect):
        await ws.receive_text()


async def test_wait_disconnected_while_another_task_receives(peer: Peer) -> None:
    ws = peer.websocket()
    await ws.accept()
    got: list[str] = []

    async def reader() -> None:
        async for text in ws.iter_text():
            got.append(text)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        peer.client_sends(text="one")
        peer.client_sends(text="two")
        peer.client_closes(1000)
        disconnect = await ws.wait_disconnected()
    assert disconnect.code == 1000
    assert got == ["one", "two"]


async def test_websocket_needs_a_websocket_scope() -> None:
    with pytest.raises(ValueError, match="websocket"):
        WebSocket({"type": "http"}, Peer().receive, Peer().send)


class GoneServer(Peer):
    """A server whose ``send`` fails as the connection goes away under it."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.accept":
            raise self.error
        await super().send(message)


@pytest.mark.parametrize(
    "error",
    [
        BrokenPipeError(),
        trio.BrokenResourceError(),
        trio.ClosedResourceError(),
        # hypercorn on Trio: its send_eof (outside its send lock) races the app's frame.
        trio.BusyResourceError("another task is currently sending data on this SocketStream"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_a_send_into_a_connection_going_away_is_a_disconnect(error: BaseException) -> None:
    websocket = GoneServer(error).websocket()
    await websocket.accept()
    with pytest.raises(WebSocketDisconnect) as info:
        await websocket.send_text("hello")
    assert info.value.code == 1006
    assert websocket.client_state is WebSocketState.DISCONNECTED
    # close() on a connection already gone returns quietly, as after a peer's close.
    await websocket.close()

    other = GoneServer(error).websocket()
    await other.accept()
    await other.close(1000)  # the close frame itself meets the teardown
    assert other.application_state is WebSocketState.DISCONNECTED
    assert other.client_state is WebSocketState.DISCONNECTED
