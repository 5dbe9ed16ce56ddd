"""Broadcast on the memory backend: ordering, types, bounded buffers and overflow policies."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trioapi.broadcast import (
    Broadcast,
    Event,
    MemoryBackend,
    OverflowPolicy,
    Subscriber,
    SubscriberOverflow,
)
from trioapi.exceptions import WebSocketException


async def take(subscriber: Subscriber, count: int) -> list[Any]:
    """The next ``count`` messages of ``subscriber`` (bounded in time: fails instead of hanging)."""
    with trio.fail_after(5):
        return [(await subscriber.receive()).message for _ in range(count)]


async def test_a_subscriber_receives_messages_in_the_order_they_were_published() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("news", max_backlog=100) as subscriber:
        for i in range(50):
            await broadcast.publish("news", f"m{i}")
        assert await take(subscriber, 50) == [f"m{i}" for i in range(50)]


async def test_events_carry_their_channel() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("news") as subscriber:
        await broadcast.publish("news", "hello")
        with trio.fail_after(5):
            assert await subscriber.receive() == Event("news", "hello")


@pytest.mark.parametrize(
    ("published", "received"),
    [
        ("text", "text"),
        ("", ""),
        (b"\x00\xffbinary", b"\x00\xffbinary"),
        (bytearray(b"ba"), b"ba"),
        ({"user": "ann", "n": [1, 2.5, None, True]}, {"user": "ann", "n": [1, 2.5, None, True]}),
        ([1, "two"], [1, "two"]),
        ((1, 2), [1, 2]),
        ({1: "int key"}, {"1": "int key"}),
        (42, 42),
        (None, None),
        ("\u00e9t\u00e9 \U0001f600", "\u00e9t\u00e9 \U0001f600"),
    ],
)
async def test_a_message_arrives_as_its_json_round_trip_with_str_and_bytes_kept(
    published: Any, received: Any
) -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("c") as subscriber:
        await broadcast.publish("c", published)
        [message] = await take(subscriber, 1)
        assert message == received
        assert type(message) is type(received)


async def test_subscribers_do_not_share_objects_with_the_publisher() -> None:
    payload = {"items": [1]}
    async with Broadcast() as broadcast, broadcast.subscribe("c") as subscriber:
        await broadcast.publish("c", payload)
        payload["items"].append(2)
        assert await take(subscriber, 1) == [{"items": [1]}]


async def test_publishing_something_not_json_serialisable_raises_type_error() -> None:
    async with Broadcast() as broadcast:
        with pytest.raises(TypeError, match="str, bytes or a JSON-serialisable value; object"):
            await broadcast.publish("c", object())


async def test_every_subscriber_of_a_channel_gets_every_message() -> None:
    async with (
        Broadcast() as broadcast,
        broadcast.subscribe("c") as first,
        broadcast.subscribe("c") as second,
        broadcast.subscribe("other") as other,
    ):
        for i in range(3):
            await broadcast.publish("c", i)
        assert await take(first, 3) == [0, 1, 2]
        assert await take(second, 3) == [0, 1, 2]
        assert other.backlog == 0


async def test_publishing_to_a_channel_without_subscribers_delivers_nothing_and_does_not_fail() -> None:
    async with Broadcast() as broadcast:
        await broadcast.publish("nobody", "x")
        assert broadcast.channels == []


async def test_a_subscriber_that_never_reads_holds_at_most_max_backlog_and_never_blocks_the_publisher() -> (
    None
):
    async with (
        Broadcast() as broadcast,
        broadcast.subscribe("c", max_backlog=10, policy="drop_oldest") as idle,
        broadcast.subscribe("c", max_backlog=1000) as reader,
    ):
        with trio.fail_after(5):
            for i in range(1000):
                await broadcast.publish("c", i)
        assert idle.backlog == 10
        assert idle.dropped == 990
        assert reader.dropped == 0
        assert await take(reader, 1000) == list(range(1000))


async def test_drop_oldest_keeps_the_latest_messages_and_counts_the_dropped_ones() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("c", max_backlog=5, policy="drop_oldest") as sub:
        for i in range(12):
            await broadcast.publish("c", i)
        assert (sub.backlog, sub.dropped) == (5, 7)
        assert await take(sub, 5) == [7, 8, 9, 10, 11]
        assert sub.policy is OverflowPolicy.DROP_OLDEST


async def test_drop_newest_keeps_the_earliest_messages_and_counts_the_dropped_ones() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("c", max_backlog=5, policy="drop_newest") as sub:
        for i in range(12):
            await broadcast.publish("c", i)
        assert (sub.backlog, sub.dropped) == (5, 7)
        assert await take(sub, 5) == [0, 1, 2, 3, 4]


async def test_a_subscriber_may_fall_behind_by_max_backlog_without_losing_anything() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("c", max_backlog=5, policy="disconnect") as sub:
        for i in range(5):
            await broadcast.publish("c", i)
        assert not sub.overflowed
        assert await take(sub, 5) == [0, 1, 2, 3, 4]


async def test_disconnect_policy_cuts_off_a_subscriber_that_falls_further_behind_with_1013() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("c", max_backlog=5, policy="disconnect") as sub:
        for i in range(8):
            await broadcast.publish("c", i)
        # Cut off at the 6th message: its buffer is freed and nothing more is kept.
        assert sub.overflowed
        assert (sub.backlog, sub.dropped) == (0, 1)
        with pytest.raises(SubscriberOverflow) as caught:
            async for _ in sub:
                pytest.fail("an overflowed subscriber must not yield buffered events")
        assert isinstance(caught.value, WebSocketException)
        assert caught.value.code == 1013
        assert "more than 5 undelivered messages" in caught.value.reason


async def test_disconnect_is_the_default_policy() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("c") as sub:
        assert sub.policy is OverflowPolicy.DISCONNECT
        assert sub.max_backlog == 100


async def test_a_slow_subscriber_cut_off_does_not_affect_the_others() -> None:
    async with (
        Broadcast() as broadcast,
        broadcast.subscribe("c", max_backlog=2) as slow,
        broadcast.subscribe("c", max_backlog=50) as fast,
    ):
        for i in range(20):
            await broadcast.publish("c", i)
        assert slow.overflowed
        assert await take(fast, 20) == list(range(20))


async def test_iteration_waits_for_messages_published_later() -> None:
    received: list[Any] = []
    async with Broadcast() as broadcast, broadcast.subscribe("c") as sub:

        async def consume() -> None:
            async for event in sub:
                received.append(event.message)
                if len(received) == 3:
                    return

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                await trio.testing.wait_all_tasks_blocked()
                for i in range(3):
                    await broadcast.publish("c", i)
    assert received == [0, 1, 2]


async def test_leaving_the_subscribe_block_stops_delivery_and_forgets_the_channel() -> None:
    async with Broadcast() as broadcast:
        async with broadcast.subscribe("c") as sub:
            assert broadcast.channels == ["c"]
        assert broadcast.channels == []
        await broadcast.publish("c", "late")
        assert sub.backlog == 0


async def test_iteration_ends_after_the_buffered_events_when_the_broadcast_closes() -> None:
    async with Broadcast() as broadcast, broadcast.subscribe("c") as sub:
        await broadcast.publish("c", "last")
        sub._close()  # what closing the Broadcast does to every subscriber
        assert [event.message async for event in sub] == ["last"]


async def test_closing_the_broadcast_ends_a_waiting_iteration() -> None:
    done = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            broadcast = Broadcast()
            await broadcast.__aenter__()
            opened = trio.Event()

            async def consume() -> None:
                async with broadcast.subscribe("c") as sub:
                    opened.set()
                    async for _ in sub:
                        pass
                done.set()

            nursery.start_soon(consume)
            await opened.wait()
            await broadcast.__aexit__(None, None, None)
    assert done.is_set()


async def test_subscribing_to_a_broadcast_that_is_not_open_says_to_enter_it() -> None:
    broadcast = Broadcast()
    with pytest.raises(RuntimeError, match="not open"):
        async with broadcast.subscribe("c"):
            pass
    with pytest.raises(RuntimeError, match="not open"):
        await broadcast.publish("c", "x")


async def test_an_exception_in_the_broadcast_block_propagates_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with Broadcast():
            raise KeyError("boom")


def test_the_url_chooses_the_backend() -> None:
    assert isinstance(Broadcast("memory://").backend, MemoryBackend)
    assert type(Broadcast("redis://127.0.0.1:1/0").backend).__name__ == "RedisBackend"
    with pytest.raises(ValueError, match="Unsupported broadcast URL 'kafka://x'"):
        Broadcast("kafka://x")


async def test_invalid_backlog_settings_are_refused_when_subscribing() -> None:
    async with Broadcast() as broadcast:
        with pytest.raises(ValueError, match="max_backlog must be at least 1"):
            async with broadcast.subscribe("c", max_backlog=0):
                pass
        with pytest.raises(ValueError, match="drop_everything"):
            async with broadcast.subscribe("c", policy="drop_everything"):  # type: ignore[arg-type]
                pass
        assert broadcast.channels == []
