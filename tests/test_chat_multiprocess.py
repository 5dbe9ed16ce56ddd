"""The chat example on Redis: rooms and presence span processes, and a Redis outage costs no connection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio
from redis_server import RedisServer, redis_server  # noqa: F401 -- the fixture
from servers import ServerProcess, running_server
from trio_websocket import WebSocketConnection, open_websocket_url

from examples.chat import UNAVAILABLE


async def next_event(ws: WebSocketConnection, *, presence: bool = False) -> Any:
    """The next event; "presence" updates are skipped unless ``presence`` asks for them alone."""
    with trio.fail_after(10):
        for _ in range(20):
            event = json.loads(await ws.get_message())
            if (event["type"] == "presence") == presence:
                return event
    raise AssertionError("no such event among the next 20")


async def wait_for_members(ws: WebSocketConnection, expected: list[str]) -> None:
    """Read presence updates until one lists ``expected`` (bounded: 20 updates, 10 s each)."""
    for _ in range(20):
        if (await next_event(ws, presence=True))["members"] == expected:
            return
    raise AssertionError(f"no presence update listing {expected}")


@contextmanager
def two_processes(kind: str, redis: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """The chat example served twice, sharing ``redis``; their output must hold no traceback."""
    env = {"BROADCAST_URL": redis.url}
    with (
        running_server(kind, "examples.chat:app", env=env) as first,
        running_server(kind, "examples.chat:app", env=env) as second,
    ):
        assert first.process.pid != second.process.pid
        yield first, second
        assert "Traceback" not in first.output + second.output


async def test_a_client_on_one_process_receives_what_a_client_on_another_published(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    with two_processes("hypercorn", redis_server) as (first, second):
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


async def test_the_list_of_who_is_in_a_room_spans_processes(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    with two_processes("trioapi-hypercorn", redis_server) as (first, second):
        with trio.fail_after(60):
            async with open_websocket_url(first.url("/ws/lobby/ann")) as ann:
                await wait_for_members(ann, ["ann"])
                async with open_websocket_url(second.url("/ws/lobby/bob")) as bob:
                    # Bob's process learns of Ann from the other process's announcement.
                    await wait_for_members(bob, ["ann", "bob"])
                    await wait_for_members(ann, ["ann", "bob"])
                    async with open_websocket_url(second.url("/ws/garden/cy")) as cy:
                        await wait_for_members(cy, ["cy"])
                # Bob and Cy have gone: Ann's process hears it from theirs.
                await wait_for_members(ann, ["ann"])


async def test_a_message_sent_while_redis_is_down_is_refused_to_its_sender_who_stays_connected(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    env = {"BROADCAST_URL": redis_server.url}
    with running_server("trioapi-hypercorn", "examples.chat:app", env=env) as server:
        with trio.fail_after(60):
            async with open_websocket_url(server.url("/ws/lobby/ann")) as ann:
                assert await next_event(ann) == {"type": "joined", "client": "ann"}
                async with open_websocket_url(server.url("/ws/lobby/bob")) as bob:
                    assert await next_event(bob) == {"type": "joined", "client": "bob"}
                    assert await next_event(ann) == {"type": "joined", "client": "bob"}
                    await survive_an_outage(redis_server, ann, bob)
        output = server.output
    # The outage and the recovery are logged once each, as warnings; no traceback.
    assert "Traceback" not in output
    lines = output.splitlines()
    for said in ("trioapi.broadcast: Lost connection to Redis", "trioapi.broadcast: Reconnected to Redis"):
        said_once = [line for line in lines if said in line]
        assert len(said_once) == 1 and " WARNING " in said_once[0], output


async def survive_an_outage(redis: RedisServer, ann: WebSocketConnection, bob: WebSocketConnection) -> None:
    """Stop Redis: Ann's messages are refused to her alone; restart it: they reach Bob again."""
    redis.stop()
    for text in ("lost one", "lost two"):
        await ann.send_message(text)
        assert await next_event(ann) == {"type": "undelivered", "text": text, "reason": UNAVAILABLE}
    assert not ann.closed and not bob.closed

    redis.start()
    # The hub resubscribes with back-off (up to 5 s between attempts): until then a
    # message may still be refused, or published to nobody (and not echoed).
    delivered = None
    for attempt in range(30):
        await ann.send_message(f"probe {attempt}")
        with trio.move_on_after(1):
            event = await next_event(ann)
            if event["type"] == "message":
                delivered = event
                break
            assert event["type"] == "undelivered"
            await trio.sleep(1)
    assert delivered is not None, "messages did not flow again after Redis came back"
    # Bob stayed connected through the outage too, and hears the room again.
    for _ in range(30):
        if await next_event(bob) == delivered:
            break
    else:
        raise AssertionError(f"Bob never received {delivered}")
