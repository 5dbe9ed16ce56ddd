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


async def test_receive_gives_connect_then_messages_of_both_kinds_then_one_disconnect() -> None:
    app = TrioAPI()
    seen: list[Any] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        seen.append(await websocket.receive())
        await websocket.send({"type": "websocket.accept"})
        while True:
            message = await websocket.receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                break
            await websocket.send(
                {"type": "websocket.send", **{k: v for k, v in message.items() if k != "type"}}
            )
        with pytest.raises(RuntimeError, match="once a disconnect message has been received"):
            await websocket.receive()

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes() == b"\x00\x01"
        await ws.close(4002, "bye")
    assert seen == [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.receive", "bytes": b"\x00\x01"},
        {"type": "websocket.disconnect", "code": 4002, "reason": "bye"},
    ]


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


async def test_a_denial_response_sent_as_messages_reaches_the_client() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.send(
            {"type": "websocket.http.response.start", "status": 401, "headers": [(b"www-authenticate", b"x")]}
        )
        await websocket.send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await websocket.send({"type": "websocket.http.response.body", "body": b"entry"})

    async with TestClient(app) as client:
        with pytest.raises(WebSocketRejected) as rejected:
            async with client.websocket_connect("/ws"):
                pass
    assert (rejected.value.status_code, rejected.value.body) == (401, b"no entry")
    assert rejected.value.headers["www-authenticate"] == "x"


@pytest.mark.parametrize(
    ("before", "message", "error"),
    [
        ([], {"type": "websocket.send", "text": "x"}, '"websocket.accept", "websocket.close" or'),
        (
            [{"type": "websocket.accept"}],
            {"type": "websocket.http.response.start", "status": 403},
            '"websocket.send" or',
        ),
        (
            [{"type": "websocket.http.response.start", "status": 403}],
            {"type": "websocket.http.response.start", "status": 403},
            '"websocket.http.response.body"',
        ),
        (
            [{"type": "websocket.accept"}, {"type": "websocket.close"}],
            {"type": "websocket.close"},
            "once a close message has been sent",
        ),
    ],
    ids=["send-before-accept", "response-after-accept", "duplicate-start", "duplicate-close"],
)
async def test_send_refuses_a_message_the_state_does_not_allow(
    before: list[dict[str, Any]], message: dict[str, Any], error: str
) -> None:
    app = TrioAPI()
    raised: list[str] = []

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        for earlier in before:
            await websocket.send(earlier)
        try:
            await websocket.send(message)
        except RuntimeError as exc:
            raised.append(str(exc))
        if not before:
            await websocket.close()

    async with TestClient(app) as client:
        try:
            async with client.websocket_connect("/ws") as ws:
                await ws.wait_closed()
        except WebSocketRejected:
            pass
    assert len(raised) == 1 and error in raised[0]


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
