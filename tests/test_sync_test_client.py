"""``trioapi.testclient.TestClient``: Starlette's synchronous test client API, for tests ported from FastAPI.

These tests are plain ``def`` functions, as FastAPI's are: the client runs the
app in a Trio run of its own, in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from trioapi import Depends, HTTPException, TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.exceptions import LifespanError
from trioapi.responses import JSONResponse
from trioapi.testclient import TestClient, WebSocketDenialResponse


def _tutorial_app() -> TrioAPI:
    """FastAPI's first WebSocket tutorial: reads until the client leaves, without catching it."""
    app = TrioAPI()

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"Message text was: {data}")

    return app


# -- WebSocket messages ------------------------------------------------------------


def test_text_bytes_and_json_go_both_ways() -> None:
    app = TrioAPI()

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.send_bytes(await websocket.receive_bytes())
        await websocket.send_json(await websocket.receive_json())
        await websocket.send_json(await websocket.receive_json(mode="binary"), mode="binary")

    with TestClient(app).websocket_connect("/echo") as websocket:
        websocket.send_text("hé")
        assert websocket.receive_text() == "hé"
        websocket.send_bytes(b"\x00\x01")
        assert websocket.receive_bytes() == b"\x00\x01"
        websocket.send_json({"a": [1, 2]})
        assert websocket.receive_json() == {"a": [1, 2]}
        websocket.send_json({"b": "ü"}, mode="binary")
        assert websocket.receive_json(mode="binary") == {"b": "ü"}


def test_receive_and_send_are_asgi_messages() -> None:
    app = TrioAPI()

    @app.websocket("/raw")
    async def raw(websocket: WebSocket) -> None:
        await websocket.accept()
        message = await websocket.receive()
        await websocket.send_text(f"got {message['type']} {message.get('text')}")
        await websocket.close(4001, "bye")

    with TestClient(app).websocket_connect("/raw") as websocket:
        websocket.send({"type": "websocket.receive", "text": "hi"})
        assert websocket.receive() == {"type": "websocket.send", "text": "got websocket.receive hi"}
        assert websocket.receive() == {"type": "websocket.close", "code": 4001, "reason": "bye"}


def test_the_app_closing_makes_receive_text_raise_websocket_disconnect() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(4000, "done")

    with TestClient(app).websocket_connect("/ws") as websocket:
        with pytest.raises(WebSocketDisconnect) as info:
            websocket.receive_text()
    assert (info.value.code, info.value.reason) == (4000, "done")


def test_the_client_closing_is_the_handlers_websocket_disconnect() -> None:
    app = TrioAPI()
    seen: list[int] = []

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen.append(exc.code)

    with TestClient(app).websocket_connect("/ws") as websocket:
        websocket.close(4002)
    assert seen == [4002]


# -- the handshake -----------------------------------------------------------------


def test_the_handshake_carries_the_headers_of_starlettes_client() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.headers))

    client = TestClient(app, headers={"x-team": "blue"})
    with client.websocket_connect("/ws", headers={"accept": "text/plain"}) as websocket:
        headers = websocket.receive_json()
    assert headers == {
        "host": "testserver",
        "user-agent": "testclient",
        "accept": "text/plain",
        "x-team": "blue",
        "connection": "upgrade",
        "sec-websocket-key": "testserver==",
        "sec-websocket-version": "13",
    }


def test_subprotocol_and_accept_headers_come_from_the_handshake() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="wamp", headers=[(b"x-room", b"red")])

    with TestClient(app).websocket_connect("/ws", subprotocols=["soap", "wamp"]) as websocket:
        assert websocket.accepted_subprotocol == "wamp"
        assert websocket.extra_headers == [(b"x-room", b"red")]


def test_a_close_before_accept_raises_websocket_disconnect_with_its_code() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.close(1001)

    with pytest.raises(WebSocketDisconnect) as info:
        with TestClient(app).websocket_connect("/ws"):
            pytest.fail("the handshake was refused")
    assert info.value.code == 1001
    assert not isinstance(info.value, WebSocketDenialResponse)


def test_a_denial_raises_websocket_denial_response() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        raise HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})

    with pytest.raises(WebSocketDenialResponse) as info:
        with TestClient(app).websocket_connect("/ws"):
            pytest.fail("the handshake was refused")
    denial = info.value
    assert isinstance(denial, WebSocketDisconnect)
    assert denial.status_code == 401
    assert denial.headers["www-authenticate"] == "Bearer"
    assert denial.json() == {"detail": "Not authenticated"}
    assert denial.text == '{"detail":"Not authenticated"}'
    assert denial.content == denial.text.encode()


def test_cookies_of_the_client_and_of_the_call_reach_the_handshake() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(websocket.cookies)

    client = TestClient(app, cookies={"session": "s1"})
    with client.websocket_connect("/ws", cookies={"theme": "dark"}) as websocket:
        assert websocket.receive_json() == {"session": "s1", "theme": "dark"}


# -- what escapes the app ----------------------------------------------------------


def test_a_disconnect_escaping_the_handler_is_raised_when_the_block_ends() -> None:
    client = TestClient(_tutorial_app())
    with pytest.raises(WebSocketDisconnect) as info:
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("one")
            assert websocket.receive_text() == "Message text was: one"
    assert info.value.code == 1000  # the client's close, which ended the handler's receive


def test_a_handler_that_catches_the_disconnect_ends_the_block_quietly() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    with TestClient(app).websocket_connect("/ws") as websocket:
        websocket.send_text("x")
        assert websocket.receive_text() == "x"


def test_an_error_in_the_handler_is_raised_into_the_test() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        raise ValueError("Session closed")

    with pytest.raises(ValueError, match="Session closed"):
        with TestClient(app).websocket_connect("/ws"):
            pass


def test_without_raise_server_exceptions_the_client_sees_1011() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        raise ValueError("a bug")

    with TestClient(app, raise_server_exceptions=False).websocket_connect("/ws") as websocket:
        with pytest.raises(WebSocketDisconnect) as info:
            websocket.receive_text()
    assert info.value.code == 1011


def test_an_exception_in_the_block_is_not_replaced_by_the_apps() -> None:
    with pytest.raises(AssertionError, match="the test's own"):
        with TestClient(_tutorial_app()).websocket_connect("/ws"):
            raise AssertionError("the test's own")


def test_dependency_teardown_has_run_when_the_block_ends() -> None:
    app = TrioAPI()
    events: list[str] = []

    async def session() -> AsyncIterator[str]:
        events.append("open")
        yield "s"
        events.append("closed")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, s: str = Depends(session)) -> None:
        await websocket.accept()
        await websocket.send_text(s)

    with TestClient(app).websocket_connect("/ws") as websocket:
        assert websocket.receive_text() == "s"
    assert events == ["open", "closed"]


# -- lifespan, runs and threads ----------------------------------------------------


def test_a_with_block_runs_the_lifespan_around_its_calls() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: TrioAPI) -> AsyncIterator[dict[str, str]]:
        events.append("startup")
        yield {"greeting": "hello"}
        events.append("shutdown")

    app = TrioAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        assert app.nursery is not None  # open: the lifespan runs in the same Trio run as this connection
        await websocket.send_text(websocket.state.greeting)

    with TestClient(app) as client:
        assert events == ["startup"]
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_text() == "hello"
    assert events == ["startup", "shutdown"]


def test_without_a_with_block_the_lifespan_does_not_run() -> None:
    @asynccontextmanager
    async def lifespan(app: TrioAPI) -> AsyncIterator[None]:
        raise AssertionError("not expected to start")
        yield

    app = TrioAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("no lifespan")

    with TestClient(app).websocket_connect("/ws") as websocket:
        assert websocket.receive_text() == "no lifespan"


def test_a_failing_startup_raises_on_entering() -> None:
    @asynccontextmanager
    async def lifespan(app: TrioAPI) -> AsyncIterator[None]:
        raise OSError("database unreachable")
        yield

    with pytest.raises(LifespanError, match="database unreachable"):
        with TestClient(TrioAPI(lifespan=lifespan)):
            pytest.fail("startup failed")


def test_two_sockets_in_a_with_block_share_one_trio_run() -> None:
    app = TrioAPI()
    members: list[WebSocket] = []

    @app.websocket("/chat")
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        members.append(websocket)
        try:
            async for text in websocket.iter_text():
                for member in members:
                    await member.send_text(text)
        finally:
            members.remove(websocket)

    with TestClient(app) as client:
        with client.websocket_connect("/chat") as ann, client.websocket_connect("/chat") as bob:
            ann.send_text("hi all")
            assert ann.receive_text() == bob.receive_text() == "hi all"


def test_no_thread_is_left_behind() -> None:
    before = threading.active_count()
    client = TestClient(_tutorial_app())
    for _ in range(3):
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws"):
                pass
        assert client.get("/nowhere").status_code == 404
    with client:
        pass
    assert threading.active_count() == before


def test_a_wait_for_a_message_never_sent_fails_after_the_timeout() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.wait_disconnected()

    with TestClient(app, timeout=0.2).websocket_connect("/ws") as websocket:
        with pytest.raises(trio.TooSlowError):
            websocket.receive_text()


# -- HTTP --------------------------------------------------------------------------


def test_http_methods_params_json_and_cookies() -> None:
    app = TrioAPI()

    @app.post("/login")
    async def login(name: str) -> JSONResponse:
        response = JSONResponse({"hello": name})
        response.set_cookie("session", f"s-{name}")
        return response

    @app.get("/me")
    async def me(session: str | None = None) -> dict[str, str | None]:
        return {"session": session}

    client = TestClient(app)
    response = client.post("/login", params={"name": "ann"})
    assert (response.status_code, response.json()) == (200, {"hello": "ann"})
    assert client.cookies == {"session": "s-ann"}
    assert client.get("/me", params={"session": "x"}).json() == {"session": "x"}
    assert client.delete("/me").status_code == 405


def test_an_http_error_is_raised_into_the_test_or_answered_with_500() -> None:
    app = TrioAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        TestClient(app).get("/boom")
    assert TestClient(app, raise_server_exceptions=False).get("/boom").status_code == 500
