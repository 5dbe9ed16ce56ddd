"""``trioapi.endpoints.WebSocketEndpoint``: Starlette's class-based WebSocket endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from trioapi import TrioAPI, WebSocket
from trioapi.endpoints import WebSocketEndpoint
from trioapi.pytest_plugin import LiveServer
from trioapi.testing import TestClient, WebSocketRejected


def _echo_app(endpoint: type[WebSocketEndpoint]) -> TrioAPI:
    app = TrioAPI()
    app.add_websocket_route("/ws", endpoint)
    return app


class Echo(WebSocketEndpoint):
    """Sends back what ``on_receive`` got, as JSON, with its Python type."""

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        shown = data.decode() if isinstance(data, bytes) else data
        await websocket.send_json({"type": type(data).__name__, "data": shown})


class TextEcho(Echo):
    encoding = "text"


class BytesEcho(Echo):
    encoding = "bytes"


class JSONEcho(Echo):
    encoding = "json"


async def test_text_encoding_gives_on_receive_a_str() -> None:
    async with TestClient(_echo_app(TextEcho)) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("hello")
        assert await ws.receive_json() == {"type": "str", "data": "hello"}


async def test_bytes_encoding_gives_on_receive_bytes() -> None:
    async with TestClient(_echo_app(BytesEcho)) as client, client.websocket_connect("/ws") as ws:
        await ws.send_bytes(b"\x68\x69")
        assert await ws.receive_json() == {"type": "bytes", "data": "hi"}


async def test_json_encoding_parses_text_and_binary_frames() -> None:
    async with TestClient(_echo_app(JSONEcho)) as client, client.websocket_connect("/ws") as ws:
        await ws.send_json({"n": 1})
        assert await ws.receive_json() == {"type": "dict", "data": {"n": 1}}
        await ws.send_json([1, "é"], mode="binary")
        assert await ws.receive_json() == {"type": "list", "data": [1, "é"]}


async def test_no_encoding_gives_what_was_sent() -> None:
    async with TestClient(_echo_app(Echo)) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("t")
        assert await ws.receive_json() == {"type": "str", "data": "t"}
        await ws.send_bytes(b"b")
        assert await ws.receive_json() == {"type": "bytes", "data": "b"}


@pytest.mark.parametrize(
    ("endpoint", "frame", "code"),
    [(TextEcho, b"binary", 1003), (BytesEcho, "text", 1003), (JSONEcho, "{not json", 1007)],
)
async def test_a_message_that_does_not_fit_the_encoding_closes_with_its_code(
    endpoint: type[WebSocketEndpoint], frame: str | bytes, code: int
) -> None:
    async with TestClient(_echo_app(endpoint)) as client, client.websocket_connect("/ws") as ws:
        await (ws.send_text(frame) if isinstance(frame, str) else ws.send_bytes(frame))
        closed_code, _ = await ws.wait_closed()
    assert closed_code == code


async def test_on_disconnect_gets_the_code_of_a_bad_data_close() -> None:
    codes: list[int] = []

    class Strict(TextEcho):
        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            codes.append(close_code)

    async with TestClient(_echo_app(Strict)) as client, client.websocket_connect("/ws") as ws:
        await ws.send_bytes(b"not text")
        assert (await ws.wait_closed())[0] == 1003
    assert codes == [1003]


def _recording(log: list[Any], **overrides: Any) -> type[WebSocketEndpoint]:
    class Recording(WebSocketEndpoint):
        encoding = "text"

        async def on_connect(self, websocket: WebSocket) -> None:
            log.append(("connect", id(self)))
            await websocket.accept(subprotocol="chat" if "chat" in websocket.subprotocols else None)

        async def on_receive(self, websocket: WebSocket, data: str) -> None:
            if data == "crash":
                raise LookupError("a bug")
            if data == "leave":
                await websocket.close(4000)
                return
            await websocket.send_text(data)

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            log.append(("disconnect", close_code))

    for name, hook in overrides.items():
        setattr(Recording, name, hook)
    return Recording


async def test_on_disconnect_gets_the_peer_close_code_once() -> None:
    log: list[Any] = []
    async with TestClient(_echo_app(_recording(log))) as client:
        async with client.websocket_connect("/ws", subprotocols=["chat"]) as ws:
            assert ws.accepted_subprotocol == "chat"
            await ws.send_text("hi")
            assert await ws.receive_text() == "hi"
            await ws.close(4001)
    assert [entry[0] for entry in log] == ["connect", "disconnect"]
    assert log[1] == ("disconnect", 4001)


async def test_the_app_closing_in_a_hook_ends_the_loop_with_its_code() -> None:
    log: list[Any] = []
    async with TestClient(_echo_app(_recording(log))) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("leave")
        assert await ws.wait_closed() == (4000, "")
    assert log[-1] == ("disconnect", 4000)


async def test_a_hook_raising_gives_1011_to_on_disconnect_and_fails_the_test() -> None:
    log: list[Any] = []
    async with TestClient(_echo_app(_recording(log))) as client:
        with pytest.raises(LookupError, match="a bug"):
            async with client.websocket_connect("/ws") as ws:
                await ws.send_text("crash")
                assert (await ws.wait_closed())[0] == 1011
    assert log[-1] == ("disconnect", 1011)


async def test_each_connection_gets_its_own_instance() -> None:
    log: list[Any] = []
    async with TestClient(_echo_app(_recording(log))) as client:
        async with client.websocket_connect("/ws"), client.websocket_connect("/ws"):
            pass
    connects = [instance for kind, instance in log if kind == "connect"]
    assert len(connects) == 2 and connects[0] != connects[1]


async def test_on_connect_may_refuse_and_on_disconnect_is_not_called() -> None:
    log: list[Any] = []

    async def refuse(self: WebSocketEndpoint, websocket: WebSocket) -> None:
        await websocket.close(4003, "not you")

    async with TestClient(_echo_app(_recording(log, on_connect=refuse))) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
    assert (info.value.status_code, info.value.code) == (403, 4003)
    assert log == []


async def test_the_decorator_declares_a_class_with_path_params() -> None:
    app = TrioAPI()

    @app.websocket_route("/rooms/{room}", name="room")
    class Room(WebSocketEndpoint):
        encoding = "text"

        async def on_receive(self, websocket: WebSocket, data: str) -> None:
            await websocket.send_text(f"{websocket.path_params['room']}: {data}")

    assert app.url_path_for("room", room="a") == "/rooms/a"
    async with TestClient(app) as client, client.websocket_connect("/rooms/blue") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "blue: hi"


async def test_the_class_is_an_asgi_app_on_its_own() -> None:
    async with TestClient(TextEcho) as client, client.websocket_connect("/anything") as ws:
        await ws.send_text("alone")
        assert await ws.receive_json() == {"type": "str", "data": "alone"}


def test_an_unknown_encoding_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="encoding"):

        class Wrong(WebSocketEndpoint):
            encoding = "utf-8"  # type: ignore[assignment]


async def test_a_hook_finding_the_peer_gone_ends_the_loop_with_the_peer_code() -> None:
    log: list[Any] = []

    class Conversation(WebSocketEndpoint):
        encoding = "text"

        async def on_receive(self, websocket: WebSocket, data: str) -> None:
            await websocket.send_text("and then?")
            await websocket.receive_text()  # raises WebSocketDisconnect: the peer has gone

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            log.append(close_code)

    async with TestClient(_echo_app(Conversation)) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("once upon a time")
        assert await ws.receive_text() == "and then?"
        await ws.vanish()
    assert log == [1006]


# -- on real servers --------------------------------------------------------------


@pytest.fixture
def app() -> TrioAPI:
    """The app the ``live_server`` fixture serves: a JSON endpoint class and a plain route."""
    app = TrioAPI()
    app.state.codes = []
    app.state.ended = trio.Event()

    @app.websocket_route("/json")
    class Doubler(WebSocketEndpoint):
        encoding = "json"

        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            await websocket.send_json({"double": data["n"] * 2})

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            app.state.codes.append(close_code)
            app.state.ended.set()

    @app.websocket_route("/plain")
    async def plain(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.url.path)

    return app


async def test_a_class_endpoint_and_a_plain_route_on_every_server(
    app: TrioAPI, live_server: LiveServer
) -> None:
    async with open_websocket_url(live_server.ws_url("/json")) as ws:
        await ws.send_message('{"n": 2}')
        assert json.loads(await ws.get_message()) == {"double": 4}
        await ws.send_message(b'{"n": 5}')
        assert json.loads(await ws.get_message()) == {"double": 10}
    async with open_websocket_url(live_server.ws_url("/plain")) as ws:
        assert await ws.get_message() == "/plain"
    with trio.fail_after(5):
        await app.state.ended.wait()
    # hypercorn reports every client close as 1006 (see the close-codes guide); native has the real code.
    assert app.state.codes == [1006 if live_server.kind == "hypercorn" else 1000]
