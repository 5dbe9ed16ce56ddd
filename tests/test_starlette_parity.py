"""Behaviours that code and tests ported from FastAPI and Starlette rely on, beyond the names.

Each test drives trioapi in memory, with ASGI messages or the async test client.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

from trioapi import TrioAPI, WebSocket
from trioapi._types import Message
from trioapi.datastructures import URL
from trioapi.exceptions import FastAPIError, RouteDefinitionError, TrioAPIError
from trioapi.responses import JSONResponse, PlainTextResponse, Response
from trioapi.routing import APIRouter
from trioapi.security import HTTPAuthorizationCredentials, HTTPBasicCredentials
from trioapi.testing import TestClient, WebSocketDenialResponse, WebSocketRejected
from trioapi.websockets import WebSocketDisconnect


class Recorder:
    """The server side of a fake ASGI WebSocket: what the app sent, and what it receives."""

    def __init__(self, *, denial: bool = True) -> None:
        self.to_app, self._inbox = trio.open_memory_channel[Message](math.inf)
        self.sent: list[Message] = []
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": "/ws",
            "headers": [(b"host", b"example.com")],
            "server": ("example.com", 80),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}} if denial else {},
        }

    async def receive(self) -> Message:
        return await self._inbox.receive()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def websocket(self) -> WebSocket:
        self.to_app.send_nowait({"type": "websocket.connect"})
        return WebSocket(self.scope, self.receive, self.send)


# -- exceptions and credentials ----------------------------------------------------


def test_fastapi_error_is_trioapi_error_and_catches_a_bad_declaration() -> None:
    assert FastAPIError is TrioAPIError
    assert issubclass(RouteDefinitionError, FastAPIError)
    assert issubclass(RouteDefinitionError, TypeError)


def test_credentials_have_pydantic_style_model_dump() -> None:
    bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials="abc")
    basic = HTTPBasicCredentials(username="ann", password="secret")
    assert bearer.model_dump() == {"scheme": "Bearer", "credentials": "abc"}
    assert basic.model_dump() == {"username": "ann", "password": "secret"}


# -- URLs under a root_path -----------------------------------------------------------


def _scope(path: str, root_path: str) -> dict[str, Any]:
    return {"type": "websocket", "path": path, "root_path": root_path, "server": ("example.com", 80)}


def test_the_url_prefixes_a_path_that_lacks_the_root_path() -> None:
    assert URL.from_scope(_scope("/ws", "/api")).path == "/api/ws"


def test_the_url_keeps_a_path_that_already_starts_with_the_root_path() -> None:
    assert URL.from_scope(_scope("/api/ws", "/api")).path == "/api/ws"
    assert URL.from_scope(_scope("/api", "/api")).path == "/api"


def test_a_path_that_only_shares_a_prefix_with_the_root_path_is_prefixed() -> None:
    assert URL.from_scope(_scope("/apiv2/ws", "/api")).path == "/api/apiv2/ws"


# -- url_for -------------------------------------------------------------------------


async def test_url_for_looks_in_the_router_that_routed_the_connection() -> None:
    router = APIRouter()

    @router.websocket("/inner/{room}", name="inner")
    async def inner(websocket: WebSocket) -> None: ...  # pragma: no cover

    peer = Recorder()
    peer.scope["router"] = router  # as a Starlette router sets it
    websocket = peer.websocket()
    assert websocket.url_for("inner", room="red") == "ws://example.com/inner/red"


async def test_url_for_without_an_app_or_router_says_what_is_missing() -> None:
    websocket = Recorder().websocket()
    with pytest.raises(RuntimeError, match="scope\\['app'\\]"):
        websocket.url_for("anything")


# -- responses on a WebSocket scope ---------------------------------------------------


async def test_a_response_called_with_a_websocket_scope_sends_a_denial() -> None:
    peer = Recorder()
    await PlainTextResponse("go away", status_code=403)(peer.scope, peer.receive, peer.send)
    assert [message["type"] for message in peer.sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert peer.sent[0]["status"] == 403
    assert peer.sent[1]["body"] == b"go away"


async def test_send_denial_response_sends_each_message_type_once() -> None:
    peer = Recorder()
    websocket = peer.websocket()
    await websocket.send_denial_response(JSONResponse({"detail": "no"}, 401))
    assert [message["type"] for message in peer.sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert peer.sent[0]["status"] == 401


async def test_send_denial_response_without_the_extension_is_starlettes_runtime_error() -> None:
    peer = Recorder(denial=False)
    websocket = peer.websocket()
    with pytest.raises(RuntimeError, match="doesn't support the Websocket Denial Response extension"):
        await websocket.send_denial_response(Response(b"", 403))
    assert peer.sent == []


# -- the async test client: denials, raw messages, disconnects -----------------------------


def _denying_app() -> TrioAPI:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("nope", 418, headers={"x-why": "tea"}))

    return app


async def test_a_denial_raises_websocket_denial_response_with_the_response() -> None:
    async with TestClient(_denying_app()) as client:
        with pytest.raises(WebSocketDenialResponse) as refused:
            async with client.websocket_connect("/ws"):
                pass  # pragma: no cover
    assert isinstance(refused.value, WebSocketRejected)
    assert refused.value.status_code == 418
    assert refused.value.headers["x-why"] == "tea"
    assert refused.value.text == "nope"


async def test_receive_message_and_send_message_are_asgi_messages() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        message = await websocket.receive()
        await websocket.send_text(f"got {message['type']} {message.get('bytes')!r}")
        await websocket.close(4000, "done")

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_message({"type": "websocket.receive", "bytes": b"\x01"})
        sent = await ws.receive_message()
        assert sent == {"type": "websocket.send", "text": "got websocket.receive b'\\x01'"}
        closed = await ws.receive_message()
        assert (closed["type"], closed["code"], closed["reason"]) == ("websocket.close", 4000, "done")


async def test_send_message_disconnect_is_the_handlers_websocket_disconnect() -> None:
    app = TrioAPI()
    seen: list[int] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        message = await websocket.receive()
        seen.append(message["code"])

    async with TestClient(app) as client:
        async with client.websocket_connect("/ws") as ws:
            await ws.send_message({"type": "websocket.disconnect", "code": 4001})
    assert seen == [4001]


def _reads_until_the_client_leaves() -> TrioAPI:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.receive_text()

    return app


async def test_a_disconnect_escaping_the_handler_is_a_normal_end_by_default() -> None:
    async with TestClient(_reads_until_the_client_leaves()) as client:
        async with client.websocket_connect("/ws") as ws:
            await ws.close(1001)


async def test_raise_disconnects_re_raises_a_disconnect_escaping_the_handler() -> None:
    async with TestClient(_reads_until_the_client_leaves(), raise_disconnects=True) as client:
        with pytest.raises(WebSocketDisconnect) as left:
            async with client.websocket_connect("/ws") as ws:
                await ws.close(1001)
    assert left.value.code == 1001


# -- what escapes the app: a server's scope, and Starlette's test client's ---------------


class Driver:
    """An ASGI peer for a whole app: a server's scope (with ``asgi``) or one like Starlette's
    ``TestClient``'s, which has no ``asgi`` key and answers a close only when its block ends."""

    def __init__(self, *, server: bool) -> None:
        self.to_app, self._inbox = trio.open_memory_channel[Message](math.inf)
        self.sent: list[Message] = []
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "scheme": "ws",
            "path": "/ws",
            "raw_path": b"/ws",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "client": ("testclient", 50000),
            "server": ("testserver", 80),
            "subprotocols": [],
            "state": {},
            "extensions": {"websocket.http.response": {}},
        }
        if server:
            self.scope["asgi"] = {"version": "3.0", "spec_version": "2.4"}
        self.to_app.send_nowait({"type": "websocket.connect"})

    async def receive(self) -> Message:
        return await self._inbox.receive()

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def _app_raising(error: type[Exception]) -> TrioAPI:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        if error is WebSocketDisconnect:
            while True:
                await websocket.receive_text()
        raise error("broken")

    return app


async def test_under_a_server_a_disconnect_escaping_the_handler_stays_inside_the_app() -> None:
    driver = Driver(server=True)
    driver.to_app.send_nowait({"type": "websocket.disconnect", "code": 1001})
    await _app_raising(WebSocketDisconnect)(driver.scope, driver.receive, driver.send)
    assert [message["type"] for message in driver.sent] == ["websocket.accept"]


async def test_under_a_server_a_handler_error_is_answered_with_1011_not_raised() -> None:
    driver = Driver(server=True)
    driver.to_app.send_nowait({"type": "websocket.disconnect", "code": 1011})  # the close answer
    await _app_raising(ValueError)(driver.scope, driver.receive, driver.send)
    assert driver.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": "Internal Server Error"}


async def test_under_starlettes_test_client_a_disconnect_escaping_the_handler_is_raised() -> None:
    driver = Driver(server=False)
    driver.to_app.send_nowait({"type": "websocket.disconnect", "code": 1000})
    with pytest.raises(WebSocketDisconnect) as left:
        await _app_raising(WebSocketDisconnect)(driver.scope, driver.receive, driver.send)
    assert left.value.code == 1000


async def test_under_starlettes_test_client_a_handler_error_is_closed_then_raised_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    driver = Driver(server=False)  # never answers the close frame, as Starlette's client within its block
    with pytest.raises(ValueError, match="broken"):
        await _app_raising(ValueError)(driver.scope, driver.receive, driver.send)
    assert driver.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": "Internal Server Error"}
    assert trio.current_time() == 0  # raised without waiting for the close answer
