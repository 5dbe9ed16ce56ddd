"""The raw ASGI-message API of ``WebSocket`` (Starlette's ``receive()`` / ``send(message)``), in memory.

The typed ``receive_text`` and friends are tested in ``test_websocket_asgi.py``; the same
messages on every server are in the contract suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trioapi import TrioAPI, WebSocket
from trioapi.responses import FileResponse
from trioapi.testing import TestClient, WebSocketRejected
from trioapi.websockets import WebSocketDisconnected


async def test_send_accept_with_a_subprotocol_and_headers() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.send({"type": "websocket.accept", "subprotocol": "v2", "headers": [(b"x-a", b"1")]})
        await websocket.send({"type": "websocket.close", "code": 4000})

    async with TestClient(app) as client, client.websocket_connect("/ws", subprotocols=["v1", "v2"]) as ws:
        assert ws.accepted_subprotocol == "v2"
        assert ws.response_headers["x-a"] == "1"
        assert await ws.wait_closed() == (4000, "")


async def test_receive_after_the_handshake_was_refused_is_an_error() -> None:
    app = TrioAPI()
    raised: list[str] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.close()
        try:
            await websocket.receive()
        except RuntimeError as exc:
            raised.append(str(exc))

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected):
            async with client.websocket_connect("/ws"):
                pass
    assert raised and "refused or closed before it was accepted" in raised[0]


async def test_the_websocket_state_shows_the_peer_left_before_the_handshake() -> None:
    app = TrioAPI()
    seen: list[Any] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        seen.append(await websocket.receive())

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    sent: list[Any] = []
    inbox = [{"type": "websocket.disconnect", "code": 1001}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert seen == [{"type": "websocket.disconnect", "code": 1001, "reason": ""}]


async def test_a_file_response_can_refuse_the_handshake(tmp_path: Path) -> None:
    page = tmp_path / "denied.txt"
    page.write_bytes(b"go away\n" * 10_000)  # more than one chunk of FileResponse
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.send_denial_response(FileResponse(page, status_code=403, media_type="text/plain"))

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as rejected:
            async with client.websocket_connect("/ws"):
                pass
    assert rejected.value.status_code == 403
    assert rejected.value.body == page.read_bytes()
    assert rejected.value.headers["content-type"].startswith("text/plain")


async def test_misuse_of_the_state_raises_starlettes_websocket_disconnected() -> None:
    app = TrioAPI()
    raised: list[type[BaseException]] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        for misuse in (websocket.receive_text, websocket.receive_json):
            try:
                await misuse()
            except WebSocketDisconnected:
                raised.append(WebSocketDisconnected)
        await websocket.accept()
        await websocket.close()
        try:
            await websocket.send_text("too late")
        except WebSocketDisconnected as exc:
            assert isinstance(exc, RuntimeError)  # a bug in the handler, as in Starlette
            raised.append(WebSocketDisconnected)

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.wait_closed()
    assert raised == [WebSocketDisconnected] * 3
