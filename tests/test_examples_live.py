"""Every seed example served by a real server process and driven by trio-websocket's client.

Each example runs on hypercorn's trio worker (``hypercorn --worker-class trio``)
and on trioapi's native transport (``trioapi run --server trio-websocket``), with
the same expectations; the server's output must hold no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
import trio
from servers import KINDS, ServerProcess, running_server
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

Scenario = Callable[[ServerProcess], Awaitable[None]]


async def _rejected(url: str, **kwargs: object) -> ConnectionRejected:
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(url, **kwargs):  # type: ignore[arg-type]
            pass
    return info.value


async def basic(server: ServerProcess) -> None:
    async with open_websocket_url(server.url("/ws")) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "Message text was: hello"


async def path_params(server: ServerProcess) -> None:
    async with open_websocket_url(server.url("/ws/42")) as ws:
        await ws.send_message("hi")
        assert await ws.get_message() == "Client 42: hi"
    assert (await _rejected(server.url("/ws/abc"))).status_code == 403


async def dependencies(server: ServerProcess) -> None:
    good = [(b"authorization", b"Bearer valid-token")]
    async with open_websocket_url(server.url("/ws"), extra_headers=good) as ws:
        assert await ws.get_message() == "Authenticated with token: valid-token"
        await ws.send_message("ping")
        assert await ws.get_message() == "Echo: ping"
    denied = await _rejected(server.url("/ws"), extra_headers=[(b"authorization", b"Bearer wrong")])
    assert denied.status_code == 401
    assert json.loads(denied.body or b"{}") == {"detail": "Invalid token"}
    assert (await _rejected(server.url("/ws"))).status_code in (401, 403)


async def json_messages(server: ServerProcess) -> None:
    async with open_websocket_url(server.url("/ws/json")) as ws:
        await ws.send_message('{"n": 1}')
        reply = json.loads(await ws.get_message())
        assert reply["original_message"] == {"n": 1}
        await ws.send_message("{broken")
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
        assert info.value.reason.code == 1007


async def connection_manager(server: ServerProcess) -> None:
    async with open_websocket_url(server.url("/ws/1")) as one:
        async with open_websocket_url(server.url("/ws/2")) as two:
            await one.send_message("hi")
            assert await one.get_message() == "You wrote: hi"
            assert await one.get_message() == "Client #1 says: hi"
            assert await two.get_message() == "Client #1 says: hi"
        assert await one.get_message() == "Client #2 left the chat"


async def query_params(server: ServerProcess) -> None:
    async with open_websocket_url(server.url("/ws?room=lobby&user_id=7")) as ws:
        assert await ws.get_message() == "Welcome to room lobby, user 7!"
        await ws.send_message("yo")
        assert await ws.get_message() == "[lobby] User 7: yo"
    assert (await _rejected(server.url("/ws?room=lobby"))).status_code == 403
    assert (await _rejected(server.url("/ws?room=lobby&user_id=x"))).status_code == 403


async def error_handling(server: ServerProcess) -> None:
    async with open_websocket_url(server.url("/ws/safe")) as ws:
        await ws.send_message("{nope")
        assert json.loads(await ws.get_message()) == {"error": "Invalid JSON format"}
        await ws.send_message('{"action": "go"}')
        assert json.loads(await ws.get_message()) == {"success": True, "action": "go", "data": None}


async def custom_close(server: ServerProcess) -> None:
    for command, code, reason in [
        ("close", 1000, "Client requested close"),
        ("error", 1011, "Server error occurred"),
    ]:
        async with open_websocket_url(server.url("/ws/custom-close")) as ws:
            await ws.send_message("x")
            assert await ws.get_message() == "Received: x"
            await ws.send_message(command)
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert (info.value.reason.code, info.value.reason.reason) == (code, reason)


async def routes(server: ServerProcess) -> None:
    async with open_websocket_url(server.url("/v1/rooms/blue")) as ws:
        assert json.loads(await ws.get_message()) == {"room": "blue", "url": "/v1/rooms/blue"}
    assert (await _rejected(server.url("/nowhere"))).status_code == 404


SCENARIOS: dict[str, Scenario] = {
    "basic": basic,
    "path_params": path_params,
    "dependencies": dependencies,
    "json_messages": json_messages,
    "connection_manager": connection_manager,
    "query_params": query_params,
    "error_handling": error_handling,
    "custom_close": custom_close,
    "routes": routes,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("example", sorted(SCENARIOS))
async def test_example_on_a_real_server(example: str, kind: str) -> None:
    with running_server(kind, f"examples.{example}:app") as server:
        with trio.fail_after(20):
            await SCENARIOS[example](server)
        assert server.terminate() == 0
        assert "Traceback" not in server.output, server.output
