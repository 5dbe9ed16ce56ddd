"""The chat's ``Presence``: what one process learns of the others from their announcements.

The other processes are stood for by announcements published on the shared
``Broadcast`` (memory:// here, as Redis would carry them); trio's autojump clock
lets the heartbeats and expiries pass at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from examples.presence import CHANNEL, Presence
from trioapi.broadcast import Broadcast, ConnectionHub, Subscriber

HEARTBEAT = 5.0


@asynccontextmanager
async def presence_here() -> AsyncIterator[tuple[Presence, Broadcast]]:
    """A running ``Presence`` of "this process", and the broadcast the others announce on."""
    async with Broadcast("memory://") as broadcast:
        presence = Presence(broadcast, ConnectionHub(broadcast), heartbeat=HEARTBEAT)
        async with presence.running():
            yield presence, broadcast


async def announce(broadcast: Broadcast, **announcement: Any) -> None:
    """Publish as another process would, and let this one's listener take it in."""
    await broadcast.publish(CHANNEL, announcement)
    await trio.testing.wait_all_tasks_blocked()


async def test_members_of_another_process_are_listed_with_this_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with presence_here() as (presence, broadcast):
        with presence.entered("lobby", "ann"):
            await announce(broadcast, process="other", room="lobby", names=["bob", "cy"])
            assert presence.members("lobby") == ["ann", "bob", "cy"]
            assert presence.members("garden") == []


async def test_a_name_open_in_two_tabs_stays_listed_until_both_have_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with presence_here() as (presence, _):
        with presence.entered("lobby", "ann"):
            with presence.entered("lobby", "ann"):
                assert presence.members("lobby") == ["ann"]
            assert presence.members("lobby") == ["ann"]
        assert presence.members("lobby") == []


async def test_a_process_that_stops_announcing_is_forgotten_after_three_heartbeats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with presence_here() as (presence, broadcast):
        # Killed right after its announcement: no goodbye, no refresh.
        await announce(broadcast, process="killed", room="lobby", names=["bob"])
        await trio.sleep(2.5 * HEARTBEAT)
        assert presence.members("lobby") == ["bob"]
        await trio.sleep(HEARTBEAT)
        assert presence.members("lobby") == []


async def test_a_process_that_refreshes_its_announcement_stays_listed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with presence_here() as (presence, broadcast):
        for _ in range(6):
            await announce(broadcast, process="alive", room="lobby", names=["bob"])
            await trio.sleep(HEARTBEAT)
        assert presence.members("lobby") == ["bob"]


async def test_a_process_that_says_goodbye_is_forgotten_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with presence_here() as (presence, broadcast):
        await announce(broadcast, process="leaving", room="lobby", names=["bob"])
        await announce(broadcast, process="leaving", bye=True)
        assert presence.members("lobby") == []


async def test_a_process_that_asks_hears_this_ones_rooms(autojump_clock: trio.testing.MockClock) -> None:
    async with presence_here() as (presence, broadcast):
        async with broadcast.subscribe(CHANNEL) as channel:
            with presence.entered("lobby", "ann"), presence.entered("garden", "cy"):
                await trio.testing.wait_all_tasks_blocked()
                await drain(channel)
                await announce(broadcast, process="new", ask=True)
                heard = await drain(channel)
    assert {"process": presence.process, "room": "lobby", "names": ["ann"]} in heard
    assert {"process": presence.process, "room": "garden", "names": ["cy"]} in heard


async def test_what_is_not_an_announcement_is_ignored(autojump_clock: trio.testing.MockClock) -> None:
    async with presence_here() as (presence, broadcast):
        for junk in (b"raw bytes", "text", [1, 2], {"room": "lobby", "names": ["eve"]}, {"process": "x"}):
            await broadcast.publish(CHANNEL, junk)
        await announce(broadcast, process="x", room="lobby", names=["bob"])
        assert presence.members("lobby") == ["bob"]


async def drain(channel: Subscriber) -> list[Any]:
    """The messages waiting in ``channel``, once every task is blocked."""
    await trio.testing.wait_all_tasks_blocked()
    heard = []
    while channel.backlog:
        heard.append((await channel.receive()).message)
    return heard
