"""Broadcast through a real Redis: between instances, across a restart, and when Redis is down.

These tests use the real clock (coredis's own timers do not mix with
``autojump_clock``); every wait is bounded.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import coredis
import pytest
import trio
from redis_server import RedisServer, redis_server  # noqa: F401 -- the fixture
from servers import free_port

from trioapi.broadcast import BackendUnavailable, Broadcast, RedisBackend, Subscriber


def fast_reconnecting(url: str) -> Broadcast:
    """A Redis broadcast that retries every 50-200 ms, so restarts are quick to test."""
    return Broadcast(url, backend=RedisBackend(url, connect_timeout=2, max_backoff=0.2))


async def take(subscriber: Subscriber, count: int) -> list[Any]:
    with trio.fail_after(5):
        return [(await subscriber.receive()).message for _ in range(count)]


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (at most about 10 s, polling every 10 ms) until ``condition()`` holds."""
    for _ in range(1000):
        if condition():
            return
        await trio.sleep(0.01)
    pytest.fail(f"timed out waiting until {what}")


async def numsub(url: str, channel: str) -> int:
    async with coredis.Redis.from_url(url) as client:
        counts = await client.pubsub_numsub(channel)
        return int(counts[channel.encode()])


async def test_a_subscriber_of_one_instance_receives_what_another_instance_published(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    async with (
        Broadcast(redis_server.url) as publisher,
        Broadcast(redis_server.url) as receiver,
        receiver.subscribe("room") as subscriber,
    ):
        for message in ["text", b"\x00\x01bytes", {"json": [1, None]}, ["a"], 7]:
            await publisher.publish("room", message)
        received = await take(subscriber, 5)
    assert received == ["text", b"\x00\x01bytes", {"json": [1, None]}, ["a"], 7]
    assert [type(m) for m in received] == [str, bytes, dict, list, int]


async def test_messages_from_one_publisher_arrive_in_order(redis_server: RedisServer) -> None:  # noqa: F811
    async with (
        Broadcast(redis_server.url) as publisher,
        Broadcast(redis_server.url) as receiver,
        receiver.subscribe("c", max_backlog=500) as subscriber,
    ):
        for i in range(300):
            await publisher.publish("c", i)
        assert await take(subscriber, 300) == list(range(300))


async def test_subscribers_in_the_publishing_process_receive_through_redis_too(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    async with Broadcast(redis_server.url) as broadcast, broadcast.subscribe("c") as subscriber:
        await broadcast.publish("c", "loop")
        assert await take(subscriber, 1) == ["loop"]


async def test_one_redis_subscription_per_channel_per_process_dropped_after_the_last_subscriber(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    async with Broadcast(redis_server.url) as broadcast:
        async with broadcast.subscribe("c"), broadcast.subscribe("c"):
            assert await numsub(redis_server.url, "c") == 1
        await eventually(lambda: not broadcast.backend._active, "the listener unsubscribed")  # type: ignore[attr-defined]
        assert await numsub(redis_server.url, "c") == 0


async def test_a_message_from_another_redis_client_is_delivered_as_bytes(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    async with (
        Broadcast(redis_server.url) as broadcast,
        broadcast.subscribe("c") as subscriber,
        coredis.Redis.from_url(redis_server.url) as client,
    ):
        await client.publish("c", "plain")
        assert await take(subscriber, 1) == [b"plain"]


async def test_publishing_resumes_after_redis_restarts_and_subscribers_learn_of_the_gap(
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trioapi.broadcast")
    async with (
        fast_reconnecting(redis_server.url) as publisher,
        fast_reconnecting(redis_server.url) as receiver,
        receiver.subscribe("c") as subscriber,
    ):
        backend = receiver.backend
        assert isinstance(backend, RedisBackend)
        await publisher.publish("c", "before")
        assert await take(subscriber, 1) == ["before"]
        assert subscriber.gaps == 0

        redis_server.stop()
        await eventually(lambda: not backend.connected, "the listener noticed the outage")
        assert subscriber.gaps == 1
        with pytest.raises(BackendUnavailable, match="Cannot publish to Redis"):
            await publisher.publish("c", "during")
        await trio.sleep(0.5)  # several failed reconnection attempts

        redis_server.start()
        await eventually(lambda: backend.connected, "the listener reconnected")
        await publisher.publish("c", "after")
        assert await take(subscriber, 1) == ["after"]
        assert subscriber.gaps == 1
        assert backend.outages == 1

    # Logged once per outage by each Broadcast (each has its own listener), not per retry.
    messages = [r.getMessage() for r in caplog.records if r.name == "trioapi.broadcast"]
    assert sum("Lost connection to Redis" in m for m in messages) == 2, messages
    assert sum("Reconnected to Redis" in m for m in messages) == 2, messages
    assert "Connection lost" in messages[0]


async def test_entering_a_broadcast_fails_quickly_and_clearly_when_redis_is_down() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with trio.fail_after(5), pytest.raises(BackendUnavailable) as caught:
        async with Broadcast(url):
            pytest.fail("entered a Broadcast without Redis")
    assert f"Cannot connect to Redis at {url}" in str(caught.value)
    assert "Is redis-server running" in str(caught.value)


def test_the_redis_backend_says_how_to_install_coredis_when_it_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)
    with pytest.raises(ImportError, match=r"pip install 'trioapi\[redis\]'"):
        Broadcast("redis://127.0.0.1:6379/0")
