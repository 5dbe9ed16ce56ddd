"""The chat example on two hypercorn processes sharing one Redis: rooms span processes."""

from __future__ import annotations

import json
from typing import Any

import trio
from redis_server import RedisServer, redis_server  # noqa: F401 -- the fixture
from servers import running_server
from trio_websocket import WebSocketConnection, open_websocket_url


async def next_event(ws: WebSocketConnection) -> Any:
    with trio.fail_after(10):
        return json.loads(await ws.get_message())


async def test_a_client_on_one_process_receives_what_a_client_on_another_published(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    env = {"BROADCAST_URL": redis_server.url}
    with (
        running_server("hypercorn", "examples.chat:app", env=env) as first,
        running_server("hypercorn", "examples.chat:app", env=env) as second,
    ):
        assert first.process.pid != second.process.pid
        with trio.fail_after(30):
            async with open_websocket_url(first.url("/ws/lobby/ann")) as ann:
                # A client's own "joined" comes back once its process has subscribed the room.
                assert await next_event(ann) == {"type": "joined", "client": "ann"}
                async with open_websocket_url(second.url("/ws/lobby/bob")) as bob:
                    assert await next_event(bob) == {"type": "joined", "client": "bob"}
                    assert await next_event(ann) == {"type": "joined", "client": "bob"}
                    await ann.send_message("hello from process one")
                    expected = {"type": "message", "client": "ann", "text": "hello from process one"}
                    assert await next_event(bob) == expected
                    assert await next_event(ann) == expected
                    await bob.send_message("and back")
                    assert await next_event(ann) == {"type": "message", "client": "bob", "text": "and back"}
        assert "Traceback" not in first.output + second.output
