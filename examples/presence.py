"""Who is in each room of a ``ConnectionHub``, across every process that shares its ``Broadcast``.

A process knows its own members. It learns the others' from announcements on
one broadcast channel: each process announces the names it has in a room when
they change, again every ``heartbeat`` seconds (so an entry of a process that
died without a word expires), and on request from a process that has just
started or lost its broker connection. Each process then pushes the merged
list to its own members as ``{"type": "presence", "members": [...]}``.

Only the public ``Broadcast`` and ``ConnectionHub`` API is used; with
``memory://`` the same code serves one process.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio

from trioapi.broadcast import BackendUnavailable, Broadcast, ConnectionHub, Subscriber

#: The channel every process announces its members on.
CHANNEL = "chat.presence"


class Presence:
    """The names in each room of ``hub``, in this process and in every other one on ``broadcast``."""

    def __init__(self, broadcast: Broadcast, hub: ConnectionHub, *, heartbeat: float = 5.0) -> None:
        self._broadcast = broadcast
        self._hub = hub
        #: Seconds between two announcements of the same room; an entry expires after three.
        self.heartbeat = heartbeat
        #: This process, in announcements (a pid may repeat across machines; this does not).
        self.process = secrets.token_hex(8)
        # room -> names connected to this process (a name counts once per open tab).
        self._local: dict[str, Counter[str]] = {}
        # room -> process -> (its names there, when that entry expires on trio's clock).
        self._remote: dict[str, dict[str, tuple[frozenset[str], float]]] = {}
        # Work for the updater task, so that entering and leaving never await
        # (leaving runs in a handler's `finally`, maybe while it is being cancelled).
        self._to_push: set[str] = set()
        self._to_announce: set[str] = set()
        self._ask = False
        self._changed = trio.Event()

    def members(self, room: str) -> list[str]:
        """Everyone in ``room``, in every process, sorted."""
        now = trio.current_time()
        names = set(self._local.get(room, ()))
        for found, expires in self._remote.get(room, {}).values():
            if expires > now:
                names |= found
        return sorted(names)

    @contextmanager
    def entered(self, room: str, name: str) -> Iterator[None]:
        """``name`` is in ``room`` for the duration of the block (call it after ``hub.join``)."""
        self._local.setdefault(room, Counter())[name] += 1
        self._mark(room, announce=True)
        try:
            yield
        finally:
            names = self._local[room]
            names[name] -= 1
            if not names[name]:
                del names[name]
            if not names:
                del self._local[room]
            self._mark(room, announce=True)

    def _mark(self, room: str, *, announce: bool) -> None:
        self._to_push.add(room)
        if announce:
            self._to_announce.add(room)
        self._changed.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Announce and listen while the block runs; open it inside the ``Broadcast``."""
        # A new start (a test may run the app's lifespan many times): forget the other processes.
        self._remote.clear()
        self._changed = trio.Event()
        # A dropped announcement is repaired by the next heartbeat: drop rather than cut off.
        subscription = self._broadcast.subscribe(CHANNEL, max_backlog=1000, policy="drop_oldest")
        async with subscription as announcements:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, announcements)
                nursery.start_soon(self._update)
                nursery.start_soon(self._tick, announcements)
                # Just started: every other process, announce your rooms.
                await self._publish({"process": self.process, "ask": True})
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
            # Leaving: the other processes forget this one's members now rather than in 3 heartbeats.
            with trio.move_on_after(1, shield=True):
                await self._publish({"process": self.process, "bye": True})

    async def _publish(self, announcement: dict[str, Any]) -> bool:
        """Publish ``announcement``; ``False`` while the broker is down (the next heartbeat repairs)."""
        try:
            with trio.fail_after(5):
                await self._broadcast.publish(CHANNEL, announcement)
        except (BackendUnavailable, trio.TooSlowError):
            return False
        return True

    async def _listen(self, announcements: Subscriber) -> None:
        async for event in announcements:
            message = event.message
            # The channel is open to any Redis client: ignore what is not an announcement.
            if not isinstance(message, dict) or message.get("process") in (None, self.process):
                continue
            process = str(message["process"])
            if message.get("ask"):
                self._to_announce.update(self._local)
                self._changed.set()
            elif message.get("bye"):
                for room, entries in self._remote.items():
                    if entries.pop(process, None) is not None:
                        self._mark(room, announce=False)
            elif isinstance(message.get("room"), str) and isinstance(message.get("names"), list):
                self._learn(message["room"], process, frozenset(map(str, message["names"])))

    def _learn(self, room: str, process: str, names: frozenset[str]) -> None:
        now = trio.current_time()
        entries = self._remote.setdefault(room, {})
        old = entries.pop(process, None)
        before = old[0] if old is not None and old[1] > now else frozenset()
        if names:
            entries[process] = (names, now + 3 * self.heartbeat)
        elif not entries:
            del self._remote[room]
        if names != before:
            self._mark(room, announce=False)

    async def _tick(self, announcements: Subscriber) -> None:
        gaps = announcements.gaps
        while True:
            await trio.sleep(self.heartbeat)
            # Refresh this process's entries everywhere, and drop the entries nobody refreshed.
            self._to_announce.update(self._local)
            now = trio.current_time()
            for room, entries in list(self._remote.items()):
                for process, (_, expires) in list(entries.items()):
                    if expires <= now:
                        del entries[process]
                        self._mark(room, announce=False)
                if not entries:
                    del self._remote[room]
            if announcements.gaps != gaps:
                # The broker connection was lost meanwhile: announcements were missed both ways.
                gaps = announcements.gaps
                self._ask = True
            self._changed.set()

    async def _update(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            rooms, self._to_push = self._to_push, set()
            for room in rooms:
                # Encoded once per room; each member's copy goes through its own outbox.
                frame = json.dumps({"type": "presence", "members": self.members(room)})
                for websocket in self._hub.members(room):
                    # Still a member after the previous send's checkpoint (send_personal would
                    # otherwise make a connection the hub has cut off a member again).
                    if self._hub.member(websocket) is not None:
                        await self._hub.send_personal(websocket, frame)
            if self._ask:
                self._ask = not await self._publish({"process": self.process, "ask": True})
            rooms, self._to_announce = self._to_announce, set()
            for room in sorted(rooms):
                names = sorted(self._local.get(room, ()))
                await self._publish({"process": self.process, "room": room, "names": names})
