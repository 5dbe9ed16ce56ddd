"""The transport contract: what every way of serving an app does the same way.

Each test declares a small app, serves it on each of the four transports
(``contract.KINDS``: in memory with ``TestClient``, and in this process on
hypercorn, native and trio-websocket through ``trioapi.serve``), and checks
what the client sees (close frames, HTTP refusals; with trio-websocket's client
and the ``websockets`` library's, one after the other) and what the handler saw.

Where the transports legitimately differ, the expectation says so next to it,
as docs/guides/close-codes.md documents it: hypercorn never tells the app the
client's close code (hypercorn#127), so the handler sees 1006 there.
Known bugs are ``xfail(strict=True)`` with the reason.

The CLI's own ways of stopping (signals, process groups, hypercorn's command
line) are in test_lifecycle_live.py and test_serving_live.py; what a client
sees of the framing itself in test_third_party_clients.py.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
import trio
from contract import KINDS, TIMEOUT, Client, Probe, Refused, Served, Transport, closed, wait_until_empty

from trioapi import Depends, HTTPException, TrioAPI, WebSocket, WebSocketDisconnect, WebSocketException
from trioapi.server import ServerConfig

#: A message limit for the app (``TrioAPI.max_message_size``), and a larger one for the server.
APP_LIMIT = 4096
SERVER_LIMIT = 64 * 1024


@pytest.fixture(params=KINDS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each test runs once per way of serving."""
    return Transport(request.param)


@pytest.fixture(params=[kind for kind in KINDS if kind != "memory"])
def live_transport(request: pytest.FixtureRequest) -> Transport:
    """For what only a real server has (its own message limit)."""
    return Transport(request.param)


def the_clients_close_code(kind: str, code: int, reason: str) -> tuple[int, str]:
    """What a handler sees when its client closes with ``code``: hypercorn says 1006 (hypercorn#127)."""
    return (1006, "") if kind == "hypercorn" else (code, reason)


def known_bug(request: pytest.FixtureRequest, transport: Transport, kind: str, reason: str) -> None:
    """Mark this test as failing on ``kind`` because of a known bug (strict: it must fail there)."""
    if transport.kind == kind:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def errors_logged(caplog: pytest.LogCaptureFixture, kind: type[BaseException]) -> list[BaseException]:
    """The exceptions of ``kind`` that trioapi logged with their traceback."""
    return [
        r.exc_info[1]
        for r in caplog.records
        if r.name == "trioapi"
        and r.levelno >= logging.ERROR
        and r.exc_info
        and isinstance(r.exc_info[1], kind)
    ]


async def refused(served: Served, path: str, client: str) -> Refused:
    """The HTTP response that refused a handshake to ``path``."""
    with pytest.raises(Refused) as info:
        async with served.connect(path, client):
            pass
    return info.value


# -- state rules -----------------------------------------------------------------------------


async def _receive_before_accept(websocket: WebSocket) -> None:
    await websocket.receive_text()


async def _send_before_accept(websocket: WebSocket) -> None:
    await websocket.send_text("too early")


async def _accept_twice(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.accept()


async def _send_after_close(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close(4000, "closed first")
    await websocket.close(4001, "idempotent")  # a second close is no error, and sends nothing
    await websocket.send_text("too late")


@pytest.mark.parametrize(
    ("misuse", "message", "client_sees"),
    [
        # Before accept the client is still waiting for an HTTP answer: a 500 with no detail.
        (_receive_before_accept, 'call "await websocket.accept()"', 500),
        (_send_before_accept, 'call "await websocket.accept()"', 500),
        (_accept_twice, "call it once", (1011, "Internal Server Error")),
        # The close frame is out already: the misuse is logged, the client keeps the app's close.
        (_send_after_close, "already closed by the application", (4000, "closed first")),
    ],
    ids=["receive before accept", "send before accept", "accept twice", "send after close"],
)
async def test_a_misuse_of_the_websocket_is_a_runtime_error_in_the_handler(
    transport: Transport,
    caplog: pytest.LogCaptureFixture,
    misuse: Callable[[WebSocket], Awaitable[None]],
    message: str,
    client_sees: int | tuple[int, str],
) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/misuse")
    async def endpoint(websocket: WebSocket) -> None:
        try:
            await misuse(websocket)
        except RuntimeError as exc:
            probe.record("error", exc)
            raise

    caplog.set_level(logging.ERROR, logger="trioapi")
    async with transport.serve(app) as served:
        for client in served.clients:
            if isinstance(client_sees, int):
                denial = await refused(served, "/misuse", client)
                assert (denial.status, denial.body) == (client_sees, b""), client
            else:
                async with served.connect("/misuse", client) as ws:
                    assert await closed(ws) == client_sees, client
        errors = await probe.wait_for("error", len(served.clients))
    assert all(message in str(error) for error in errors), errors
    assert errors_logged(caplog, RuntimeError) == errors


# -- the handshake and the messages ------------------------------------------------------------


async def test_the_handshake_details_reach_the_handler(
    transport: Transport, request: pytest.FixtureRequest
) -> None:
    app = TrioAPI()

    @app.websocket("/items/{name}")
    async def details(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        await websocket.send_json(
            {
                "name": name,
                "path": websocket.url.path,
                "query": websocket.url.query,
                "scheme": websocket.url.scheme,
                "tags": websocket.query_params.getlist("tag"),
                "q": websocket.query_params["q"],
                "custom": websocket.headers["x-custom"],
                "cookies": websocket.cookies,
                "client": websocket.client.host if websocket.client else None,
            }
        )

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect(
                "/items/caf%C3%A9?tag=a&tag=b&q=%20x",
                client,
                headers={"X-Custom": "value", "Cookie": "session=abc; theme=dark"},
            ) as ws:
                seen = json.loads(await ws.receive())
            assert seen == {
                "name": "café",
                "path": "/items/café",
                "query": "tag=a&tag=b&q=%20x",
                "scheme": "ws",
                "tags": ["a", "b"],
                "q": " x",
                "custom": "value",
                "cookies": {"session": "abc", "theme": "dark"},
                "client": "testclient" if transport.kind == "memory" else "127.0.0.1",
            }, client


async def test_accept_sends_the_chosen_subprotocol_and_extra_headers(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="chat.v2", headers=[(b"x-server", b"trioapi")])
        await websocket.send_json(websocket.subprotocols)

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/ws", client, subprotocols=["chat.v1", "chat.v2"]) as ws:
                assert (ws.subprotocol, ws.response_headers["x-server"]) == ("chat.v2", "trioapi"), client
                assert json.loads(await ws.receive()) == ["chat.v1", "chat.v2"], client


async def test_messages_arrive_unchanged_whatever_their_content(transport: Transport) -> None:
    app = TrioAPI()
    texts = ["héllo ✓ 🎉", "", "x" * 70_000]
    blobs = [b"\x00\xff", b""]

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        for _ in texts:
            await websocket.send_text(await websocket.receive_text())
        for _ in blobs:
            await websocket.send_bytes(await websocket.receive_bytes())

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/echo", client) as ws:
                for text in texts:
                    await ws.send_text(text)
                    assert await ws.receive() == text, client
                for blob in blobs:
                    await ws.send_bytes(blob)
                    assert await ws.receive() == blob, client
                assert await closed(ws) == (1000, ""), client


# -- how a connection ends ------------------------------------------------------------------


async def test_a_handler_that_returns_after_accept_closes_with_1000(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("bye")

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/ws", client) as ws:
                assert await ws.receive() == "bye"
                assert await closed(ws) == (1000, ""), client


async def test_a_handler_that_returns_without_accept_refuses_with_403(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        return

    async with transport.serve(app) as served:
        for client in served.clients:
            assert (await refused(served, "/ws", client)).status == 403, client


async def test_close_sends_its_code_and_reason(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(4000, "custom")

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/ws", client) as ws:
                assert await closed(ws) == (4000, "custom"), client


async def test_close_before_accept_refuses_with_403(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.close(1008)

    async with transport.serve(app) as served:
        for client in served.clients:
            assert (await refused(served, "/ws", client)).status == 403, client


async def test_an_invalid_parameter_refuses_with_403(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, user_id: int) -> None:  # pragma: no cover - never reached
        await websocket.accept()

    async with transport.serve(app) as served:
        for client in served.clients:
            for query in ("", "?user_id=x"):
                assert (await refused(served, f"/ws{query}", client)).status == 403, (client, query)


async def test_an_uncaught_exception_after_accept_closes_1011_without_detail_and_is_logged(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise ValueError("secret internal detail")

    caplog.set_level(logging.ERROR, logger="trioapi")
    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/ws", client) as ws:
                assert await closed(ws) == (1011, "Internal Server Error"), client
    logged = errors_logged(caplog, ValueError)
    assert [str(exc) for exc in logged] == ["secret internal detail"] * len(served.clients)


async def test_an_uncaught_exception_before_accept_is_an_empty_http_500_and_is_logged(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        raise ValueError("secret internal detail")

    caplog.set_level(logging.ERROR, logger="trioapi")
    async with transport.serve(app) as served:
        for client in served.clients:
            denial = await refused(served, "/ws", client)
            assert (denial.status, denial.body) == (500, b""), client
    logged = errors_logged(caplog, ValueError)
    assert [str(exc) for exc in logged] == ["secret internal detail"] * len(served.clients)


async def test_a_crash_in_one_connection_leaves_the_others_working(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/echo/{name}")
    async def echo(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            if text == "crash":
                raise RuntimeError(f"{name} crashed on purpose")
            await websocket.send_text(f"{name}:{text}")

    async with transport.serve(app) as served, AsyncExitStack() as stack:
        bystanders: list[Client] = []
        for n in range(10):
            client = served.clients[n % len(served.clients)]
            bystanders.append(await stack.enter_async_context(served.connect(f"/echo/b{n}", client)))
        async with served.connect("/echo/victim") as victim:
            await victim.send_text("crash")
            assert await closed(victim) == (1011, "Internal Server Error")
        for n, bystander in enumerate(bystanders):
            await bystander.send_text("still here")
            assert await bystander.receive() == f"b{n}:still here"


async def test_a_ping_that_crosses_the_servers_close_leaves_the_handler_running(
    live_transport: Transport, request: pytest.FixtureRequest
) -> None:
    # A client's keepalive ping may be on its way as the server closes; frames need a socket.
    app, probe = TrioAPI(), Probe()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(4000, "bye")
        probe.record("after close")

    async with live_transport.serve(app) as served, served.socket("/ws") as peer:
        assert await peer.read_close() == (4000, "bye")
        await peer.send(9, b"keepalive")  # before answering the close
        await peer.send(8, struct.pack("!H", 4000))
        await wait_until_empty(app)
    assert probe.seen["after close"] == [None]


async def test_a_frame_of_the_wrong_type_closes_with_1003(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/text")
    async def text_only(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/text", client) as ws:
                await ws.send_bytes(b"\x00binary")
                assert await closed(ws) == (1003, "expected a text message, got binary"), client


async def test_invalid_json_closes_with_1007(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/json")
    async def json_only(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_json()

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/json", client) as ws:
                await ws.send_text("{broken")
                code, reason = await closed(ws)
                assert (code, reason.startswith("invalid JSON")) == (1007, True), (client, reason)


async def test_a_message_over_the_apps_limit_closes_with_1009(transport: Transport) -> None:
    app = TrioAPI(max_message_size=APP_LIMIT)

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/echo", client) as ws:
                await ws.send_text("x" * APP_LIMIT)  # exactly the limit is fine
                assert await ws.receive() == "x" * APP_LIMIT
                await ws.send_text("x" * (APP_LIMIT + 1))
                expected = (1009, f"message of {APP_LIMIT + 1} exceeds the limit of {APP_LIMIT}")
                assert await closed(ws) == expected, client


async def test_a_message_over_the_servers_limit_closes_with_1009(live_transport: Transport) -> None:
    # No server limit in memory: the in-memory client hands the app whole messages.
    app = TrioAPI()

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    config = ServerConfig(max_message_size=SERVER_LIMIT, ping_interval=None, graceful_timeout=1.0)
    async with live_transport.serve(app, config) as served:
        for client in served.clients:
            async with served.connect("/echo", client) as ws:
                await ws.send_text("x" * SERVER_LIMIT)
                assert await ws.receive() == "x" * SERVER_LIMIT
                await ws.send_text("x" * (SERVER_LIMIT + 1))
                assert (await closed(ws))[0] == 1009, client


async def test_a_websocket_exception_closes_with_its_code_and_reason(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise WebSocketException(4003, "not allowed")

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/ws", client) as ws:
                assert await closed(ws) == (4003, "not allowed"), client


async def test_a_websocket_exception_before_accept_refuses_with_403(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        raise WebSocketException(1008, "policy")

    async with transport.serve(app) as served:
        for client in served.clients:
            assert (await refused(served, "/ws", client)).status == 403, client


async def test_an_http_exception_before_accept_is_a_denial_with_its_status_headers_and_json_body(
    transport: Transport,
) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        raise HTTPException(401, "who are you?", headers={"WWW-Authenticate": "Bearer"})

    async with transport.serve(app) as served:
        for client in served.clients:
            denial = await refused(served, "/ws", client)
            assert (denial.status, denial.json()) == (401, {"detail": "who are you?"}), client
            assert denial.headers["www-authenticate"] == "Bearer", client
            assert denial.headers["content-type"] == "application/json", client


async def test_an_http_exception_after_accept_closes_1008_with_its_detail_cut_to_123_bytes(
    transport: Transport,
) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise HTTPException(403, "é" * 100)

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/ws", client) as ws:
                assert await closed(ws) == (1008, "é" * 61), client


async def test_an_unknown_path_is_refused_with_404(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:  # pragma: no cover - never reached
        await websocket.accept()

    async with transport.serve(app) as served:
        for client in served.clients:
            assert (await refused(served, "/nowhere", client)).status == 404, client
        # and the server carries on
        async with served.connect("/ws") as ws:
            assert await closed(ws) == (1000, "")


async def test_the_clients_close_code_reaches_the_handler_where_the_transport_can_see_it(
    transport: Transport,
) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("ready")
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect as exc:
            probe.record("disconnect", (exc.code, exc.reason))

    # The longest reason a close frame holds (123 bytes: "é" is 2), an empty one, a standard code.
    cases = [(4321, "bye é"), (4999, "é" * 61 + "!"), (4000, ""), (1001, "leaving")]
    async with transport.serve(app) as served:
        count = 0
        for client in served.clients:
            for code, reason in cases:
                count += 1
                async with served.connect("/ws", client) as ws:
                    assert await ws.receive() == "ready"
                    answer = await ws.close(code, reason)
                if answer is not None:  # a real server answers with the same close frame (RFC 6455 5.5.1)
                    assert answer == (code, reason), client
                seen = await probe.wait_for("disconnect", count)
                assert seen[-1] == the_clients_close_code(transport.kind, code, reason), client


# -- shutdown ---------------------------------------------------------------------------------


def _app_with_teardown(probe: Probe) -> TrioAPI:
    """An app whose handlers hold a resource (a dependency with a teardown) while they run."""
    app = TrioAPI()

    async def resource() -> AsyncIterator[str]:
        probe.record("setup")
        try:
            yield "resource"
        finally:
            probe.record("teardown")

    @app.websocket("/receiving")
    async def receiving(websocket: WebSocket, res: str = Depends(resource)) -> None:
        await websocket.accept()
        await websocket.send_text("ready")
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect as exc:
            probe.record("saw", exc.code)
            raise

    @app.websocket("/pushing")
    async def pushing(websocket: WebSocket, res: str = Depends(resource)) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text("tick")
                await trio.sleep(0.05)
        except WebSocketDisconnect as exc:
            probe.record("saw", exc.code)
            raise

    @app.websocket("/ignoring")
    async def ignoring(websocket: WebSocket, res: str = Depends(resource)) -> None:
        await websocket.accept()
        await websocket.send_text("ready")
        try:
            await trio.sleep_forever()  # never looks at the socket, so never sees the goodbye
        except trio.Cancelled:
            probe.record("cancelled")
            raise

    return app


async def _shut_down_while_clients_listen(served: Served, clients: list[Client]) -> list[tuple[int, str]]:
    """Shut ``served`` down while each client reads (and so answers) the close it gets; their closes."""
    codes: list[tuple[int, str]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(served.shut_down)
        for client in clients:
            codes.append(await closed(client))
    return codes


async def test_shutdown_says_1001_to_every_open_websocket_and_handlers_see_it(transport: Transport) -> None:
    probe = Probe()
    app = _app_with_teardown(probe)
    async with transport.serve(app) as served, AsyncExitStack() as stack:
        clients = []
        for client in served.clients:
            for path in ("/receiving", "/pushing"):
                ws = await stack.enter_async_context(served.connect(path, client))
                assert await ws.receive() in ("ready", "tick")
                clients.append(ws)
        codes = await _shut_down_while_clients_listen(served, clients)
        assert codes == [(1001, "server shutting down")] * len(clients)
        assert probe.seen["saw"] == [1001] * len(clients)
        assert len(probe.seen["teardown"]) == len(clients)
        assert len(app.connections) == 0


async def test_shutdown_ends_once_the_last_handler_has_not_when_the_grace_runs_out(
    transport: Transport,
) -> None:
    probe = Probe()
    app = _app_with_teardown(probe)
    config = ServerConfig(ping_interval=None, graceful_timeout=3600)
    async with transport.serve(app, config) as served, AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(served.connect("/receiving", c)) for c in served.clients]
        for ws in clients:
            assert await ws.receive() == "ready"
        # A grace of an hour: only seeing its last handler end lets the server stop sooner.
        with trio.fail_after(TIMEOUT):
            codes = await _shut_down_while_clients_listen(served, clients)
        assert codes == [(1001, "server shutting down")] * len(clients)


async def test_shutdown_cancels_a_handler_that_ignores_it_once_the_grace_is_over(
    transport: Transport,
) -> None:
    probe = Probe()
    app = _app_with_teardown(probe)
    config = ServerConfig(ping_interval=None, graceful_timeout=0.2)
    async with transport.serve(app, config) as served, AsyncExitStack() as stack:
        clients = []
        for client in served.clients:
            ws = await stack.enter_async_context(served.connect("/ignoring", client))
            assert await ws.receive() == "ready"
            clients.append(ws)
        codes = await _shut_down_while_clients_listen(served, clients)
        assert codes == [(1001, "server shutting down")] * len(clients)
        assert len(probe.seen["cancelled"]) == len(clients)
        assert len(probe.seen["teardown"]) == len(clients)
        assert len(app.connections) == 0


# -- tasks of a connection -------------------------------------------------------------------


async def test_start_soon_tasks_run_in_a_nursery_of_their_own_connection(transport: Transport) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        handler = trio.lowlevel.current_task()

        async def task(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            probe.record("task", (trio.lowlevel.current_task().parent_nursery, handler, websocket))

        websocket.start_soon(task)
        await websocket.nursery.start(task)  # the nursery itself, for what start_soon does not cover
        await websocket.receive_text()  # until the client leaves

    async with transport.serve(app) as served:
        async with served.connect("/ws") as one, served.connect("/ws") as two:
            seen = await probe.wait_for("task", 4)
            for nursery, handler, websocket in seen:
                assert nursery is websocket.nursery
                assert nursery.parent_task is handler  # owned by the connection's own task
                assert nursery is not app.nursery
                assert handler.parent_nursery is not app.nursery
            assert len({id(nursery) for nursery, _, _ in seen}) == 2  # one per connection
            assert len({id(handler) for _, handler, _ in seen}) == 2
            await one.close(1000, "")
            await two.close(1000, "")


async def test_start_soon_tasks_are_cancelled_when_the_handler_returns_and_the_connection_ends_after_them(
    transport: Transport,
) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()

        async def background() -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                probe.record("events", "task cancelled")
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.05)  # cleanup that takes a moment
                probe.record("events", "task cleaned up")
                raise

        websocket.start_soon(background)
        await websocket.receive_text()
        probe.record("events", "handler returned")

    async with transport.serve(app) as served:
        for n, client in enumerate(served.clients, start=1):
            async with served.connect("/ws", client) as ws:
                await ws.send_text("stop")
                assert await closed(ws) == (1000, ""), client
                # The close frame came only once the task had finished its cleanup.
                expected = ["handler returned", "task cancelled", "task cleaned up"] * n
                assert probe.seen["events"] == expected, client


async def test_a_failing_start_soon_task_closes_with_1011_and_is_logged(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    app, probe = TrioAPI(), Probe()

    async def broken() -> None:
        await trio.sleep(0.01)
        raise KeyError("task bug")

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.start_soon(broken)
        try:
            await websocket.receive_text()
        except trio.Cancelled:
            probe.record("handler cancelled")
            raise

    caplog.set_level(logging.ERROR, logger="trioapi")
    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/ws", client) as ws:
                assert await closed(ws) == (1011, "Internal Server Error"), client
    assert len(probe.seen["handler cancelled"]) == len(served.clients)
    assert [str(exc) for exc in errors_logged(caplog, KeyError)] == ["'task bug'"] * len(served.clients)


async def test_a_websocket_disconnect_in_a_start_soon_task_ends_only_that_task(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        task_ended = trio.Event()

        async def quits() -> None:
            try:
                raise WebSocketDisconnect(1000, "as when its send finds the peer gone")
            finally:
                probe.record("task ended")
                task_ended.set()

        websocket.start_soon(quits)
        await task_ended.wait()
        text = await websocket.receive_text()
        await websocket.send_text(f"still open: {text}")

    caplog.set_level(logging.WARNING, logger="trioapi")
    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/ws", client) as ws:
                await ws.send_text("hi")
                assert await ws.receive() == "still open: hi", client
                assert await closed(ws) == (1000, ""), client
    assert len(probe.seen["task ended"]) == len(served.clients)
    assert not [r for r in caplog.records if r.name == "trioapi"]


# -- a peer that vanishes -----------------------------------------------------------------------


def _handler_sees_when_the_peer(kind: str, how: str) -> int:
    """The code a handler's ``WebSocketDisconnect`` carries when its peer leaves ``how``."""
    return the_clients_close_code(kind, 1000, "")[0] if how == "close" else 1006


LEAVING = pytest.mark.parametrize("how", ["close", "fin", "reset"])


@LEAVING
async def test_a_push_loop_ends_when_its_peer_leaves(transport: Transport, how: str) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/push")
    async def push(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:  # FastAPI-style: only sends, never receives
                await websocket.send_text("tick")
                await trio.sleep(0.05)
        except WebSocketDisconnect as exc:
            probe.record("ended", exc.code)
            raise

    async with transport.serve(app) as served:
        async with served.peer("/push") as peer:
            assert await peer.receive() == "tick"
            await peer.leave(how)
            assert await probe.wait_for("ended") == [_handler_sees_when_the_peer(transport.kind, how)]
        await wait_until_empty(app)


@LEAVING
async def test_a_receive_loop_ends_when_its_peer_leaves(transport: Transport, how: str) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/receive")
    async def receive(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("ready")
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect as exc:
            probe.record("ended", exc.code)
            raise

    async with transport.serve(app) as served:
        async with served.peer("/receive") as peer:
            assert await peer.receive() == "ready"
            await peer.leave(how)
            assert await probe.wait_for("ended") == [_handler_sees_when_the_peer(transport.kind, how)]
        await wait_until_empty(app)


@LEAVING
async def test_a_handler_waiting_for_its_peer_to_leave_learns_it(transport: Transport, how: str) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/wait")
    async def wait(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("ready")
        gone = await websocket.wait_disconnected()
        probe.record("ended", gone.code)

    async with transport.serve(app) as served:
        async with served.peer("/wait") as peer:
            assert await peer.receive() == "ready"
            await peer.leave(how)
            assert await probe.wait_for("ended") == [_handler_sees_when_the_peer(transport.kind, how)]
        await wait_until_empty(app)


async def test_a_peer_that_answers_no_ping_is_dropped(live_transport: Transport) -> None:
    # Keepalive is a server's: there is none in memory.
    app, probe = TrioAPI(), Probe()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("ready")
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect as exc:
            probe.record("ended", exc.code)
            raise

    config = ServerConfig(ping_interval=0.2, idle_timeout=1.0, graceful_timeout=1.0)
    async with live_transport.serve(app, config) as served, served.socket("/ws") as peer:
        assert await peer.receive() == "ready"
        # From now on it reads nothing and answers no ping.
        assert await probe.wait_for("ended") == [1006]
        await wait_until_empty(app)


# -- the raw ASGI-message API -------------------------------------------------------------------


async def test_the_raw_message_api_connects_echoes_and_reports_the_disconnect_once(
    transport: Transport,
) -> None:
    app, probe = TrioAPI(), Probe()

    @app.websocket("/raw")
    async def raw(websocket: WebSocket) -> None:
        probe.record("messages", await websocket.receive())
        await websocket.send({"type": "websocket.accept"})
        while True:
            message = await websocket.receive()
            probe.record("messages", message)
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await websocket.send({"type": "websocket.send", "text": f"text:{message['text']}"})
            else:
                await websocket.send({"type": "websocket.send", "bytes": b"bytes:" + message["bytes"]})
        try:
            await websocket.receive()
        except RuntimeError as exc:
            probe.record("after", exc)

    async with transport.serve(app) as served:
        for n, client in enumerate(served.clients, start=1):
            probe.seen["messages"].clear()
            async with served.connect("/raw", client) as ws:
                await ws.send_text("hi")
                assert await ws.receive() == "text:hi"
                await ws.send_bytes(b"\x00\xff")
                assert await ws.receive() == b"bytes:\x00\xff"
                await ws.close(4001, "done")
            errors = await probe.wait_for("after", n)
            code, reason = the_clients_close_code(transport.kind, 4001, "done")
            assert probe.seen["messages"] == [
                {"type": "websocket.connect"},
                {"type": "websocket.receive", "text": "hi"},
                {"type": "websocket.receive", "bytes": b"\x00\xff"},
                {"type": "websocket.disconnect", "code": code, "reason": reason},
            ], client
            assert "disconnect message has been received" in str(errors[-1])


async def test_the_raw_message_api_closes_with_a_code(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/raw")
    async def raw(websocket: WebSocket) -> None:
        assert await websocket.receive() == {"type": "websocket.connect"}
        await websocket.send({"type": "websocket.accept"})
        await websocket.send({"type": "websocket.send", "text": "bye"})
        await websocket.send({"type": "websocket.close", "code": 4002, "reason": "raw close"})

    async with transport.serve(app) as served:
        for client in served.clients:
            async with served.connect("/raw", client) as ws:
                assert await ws.receive() == "bye"
                assert await closed(ws) == (4002, "raw close"), client


async def test_the_raw_message_api_denies_with_an_http_response(transport: Transport) -> None:
    app = TrioAPI()

    @app.websocket("/raw")
    async def raw(websocket: WebSocket) -> None:
        assert await websocket.receive() == {"type": "websocket.connect"}
        start = {
            "type": "websocket.http.response.start",
            "status": 418,
            "headers": [(b"x-why", b"teapot"), (b"content-type", b"text/plain")],
        }
        await websocket.send(start)
        await websocket.send({"type": "websocket.http.response.body", "body": b"short ", "more_body": True})
        await websocket.send({"type": "websocket.http.response.body", "body": b"and stout"})

    async with transport.serve(app) as served:
        for client in served.clients:
            denial = await refused(served, "/raw", client)
            assert (denial.status, denial.headers["x-why"], denial.body) == (
                418,
                "teapot",
                b"short and stout",
            )
