"""The access log (``trioapi.access``): a line per WebSocket accepted, closed or refused, per HTTP request."""

from __future__ import annotations

import logging

import pytest

from trioapi import HTTPException, TrioAPI, WebSocket
from trioapi.testing import TestClient, WebSocketRejected


def _app() -> TrioAPI:
    app = TrioAPI(allowed_origins=["https://ok.example"])

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="v1" if "v1" in websocket.subprotocols else None)
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    @app.websocket("/bye")
    async def bye(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("one")
        await websocket.close(4000)

    @app.websocket("/private")
    async def private(websocket: WebSocket) -> None:
        raise HTTPException(401, "who are you?")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "trioapi.access"]


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="trioapi.access")
    return caplog


async def test_a_connection_is_logged_when_accepted_and_when_closed(access: pytest.LogCaptureFixture) -> None:
    async with TestClient(_app()) as client:
        async with client.websocket_connect(
            "/echo", subprotocols=["v1"], headers={"origin": "https://ok.example"}
        ) as ws:
            for text in ("a", "b"):
                await ws.send_text(text)
                assert await ws.receive_text() == text
            await ws.close(1001)
    accepted, closed = _lines(access)
    assert accepted.getMessage() == 'testclient:50000 - "WebSocket /echo" accepted (subprotocol v1)'
    assert closed.getMessage().startswith('testclient:50000 - "WebSocket /echo" closed 1001 by client after ')
    assert closed.getMessage().endswith("2 in / 2 out")
    assert (closed.event, closed.code, closed.closed_by, closed.messages_in, closed.messages_out) == (  # type: ignore[attr-defined]
        "closed",
        1001,
        "client",
        2,
        2,
    )


async def test_a_close_by_the_app_says_so(access: pytest.LogCaptureFixture) -> None:
    async with TestClient(_app()) as client:
        async with client.websocket_connect("/bye", headers={"origin": "https://ok.example"}) as ws:
            assert await ws.wait_closed() == (4000, "")
    closed = _lines(access)[-1]
    assert (closed.code, closed.closed_by, closed.messages_out) == (4000, "app", 1)  # type: ignore[attr-defined]


async def test_shutdown_is_logged_as_closed_by_the_server(access: pytest.LogCaptureFixture) -> None:
    app = _app()
    async with TestClient(app) as client:
        async with client.websocket_connect("/echo", headers={"origin": "https://ok.example"}) as ws:
            await app.shutdown_connections(grace=1)
            assert (await ws.wait_closed())[0] == 1001
    closed = _lines(access)[-1]
    assert (closed.code, closed.closed_by) == (1001, "server")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "origin", "status"),
    [
        ("/nowhere", "https://ok.example", 404),
        ("/echo", "https://evil.example", 403),
        ("/private", "https://ok.example", 401),
    ],
    ids=["unknown-path", "origin", "http-exception"],
)
async def test_a_refused_handshake_is_one_line_with_its_status(
    access: pytest.LogCaptureFixture, path: str, origin: str, status: int
) -> None:
    async with TestClient(_app()) as client:
        with pytest.raises(WebSocketRejected):
            async with client.websocket_connect(path, headers={"origin": origin}):
                pass
    (line,) = _lines(access)
    assert line.getMessage() == f'testclient:50000 - "WebSocket {path}" refused {status}'
    assert line.status == status  # type: ignore[attr-defined]


async def test_an_http_request_is_one_line(access: pytest.LogCaptureFixture) -> None:
    async with TestClient(_app()) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/missing")).status_code == 404
    ok, missing = _lines(access)
    assert ok.getMessage().startswith('testclient:50000 - "GET /health HTTP/1.1" 200 in ')
    assert (missing.method, missing.status) == ("GET", 404)  # type: ignore[attr-defined]


async def test_nothing_is_formatted_when_the_access_log_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trioapi.access")
    async with TestClient(_app()) as client:
        with pytest.raises(WebSocketRejected):
            async with client.websocket_connect("/nowhere"):
                pass
        assert (await client.get("/health")).status_code == 200
    assert _lines(caplog) == []
