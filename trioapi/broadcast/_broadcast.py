"""``Broadcast``: publish to a channel, subscribe to it with a bounded buffer."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

import trio

from trioapi.broadcast._base import (
    DEFAULT_MAX_BACKLOG,
    Backlog,
    BroadcastBackend,
    Event,
    Message,
    OverflowPolicy,
    PolicyName,
    SubscriberOverflow,
)
from trioapi.broadcast.memory import MemoryBackend

logger = logging.getLogger("trioapi.broadcast")

__all__ = ["Broadcast", "Subscriber"]

#: Seconds a backend gets to shut down cleanly before it is cancelled.
BACKEND_STOP_TIMEOUT = 5.0


class _Sink(Protocol):
    """A local consumer of one channel: a ``Subscriber``, or a room of the hub.

    Called synchronously from the backend's listener: must not block or await,
    and must not attach or detach sinks.
    """

    def _push(self, event: Event) -> None: ...

    def _gap(self) -> None: ...

    def _close(self) -> None: ...


class Subscriber:
    """One subscription to a channel, read with ``async for event in subscriber``.

    Events wait in a buffer of at most ``max_backlog`` events; when it is full the
    ``policy`` decides (see ``OverflowPolicy``). Iteration ends when the
    ``subscribe`` block or the ``Broadcast`` closes, and raises
    ``SubscriberOverflow`` if the ``"disconnect"`` policy cut this subscriber off.

    Delivery is at most once: besides ``dropped`` (discarded by the policy),
    ``gaps`` counts the times the backend lost its broker connection while this
    subscriber existed; messages published during such an outage are lost.
    """

    def __init__(self, channel: str, max_backlog: int, policy: OverflowPolicy | PolicyName) -> None:
        #: The channel this subscriber receives.
        self.channel = channel
        self._backlog: Backlog[Event] = Backlog(max_backlog, policy)
        #: Times messages may have been missed because the broker connection was lost.
        self.gaps = 0

    @property
    def max_backlog(self) -> int:
        """The most events this subscriber buffers."""
        return self._backlog.max_backlog

    @property
    def policy(self) -> OverflowPolicy:
        """What happens to a message that arrives while the buffer is full."""
        return self._backlog.policy

    @property
    def backlog(self) -> int:
        """Events received but not yet read (never more than ``max_backlog``)."""
        return len(self._backlog)

    @property
    def dropped(self) -> int:
        """Messages not delivered to this subscriber because its buffer was full."""
        return self._backlog.dropped

    @property
    def overflowed(self) -> bool:
        """``True`` once the ``"disconnect"`` policy has cut this subscriber off."""
        return self._backlog.overflowed

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._backlog.get(self._overflow_error)
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> Event:
        """The next event; raises ``trio.EndOfChannel`` once the subscription is closed."""
        return await self._backlog.get(self._overflow_error)

    def _overflow_error(self) -> SubscriberOverflow:
        return SubscriberOverflow(self.channel, self.max_backlog)

    def _push(self, event: Event) -> None:
        self._backlog.put(event)

    def _gap(self) -> None:
        self.gaps += 1

    def _close(self) -> None:
        self._backlog.close()

    def __repr__(self) -> str:
        return (
            f"<Subscriber {self.channel!r} backlog={self.backlog}/{self.max_backlog} "
            f"policy={self.policy.value} dropped={self.dropped} gaps={self.gaps}>"
        )


def backend_from_url(url: str) -> BroadcastBackend:
    """The backend a URL names: ``memory://`` or ``redis://host:port/db`` (``rediss://`` for TLS)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBackend()
    if scheme in ("redis", "rediss", "unix"):
        from trioapi.broadcast.redis import RedisBackend

        return RedisBackend(url)
    raise ValueError(f"Unsupported broadcast URL {url!r}: use 'memory://' or 'redis://host:port/db'")


def _warn_if_split_between_workers(backend: BroadcastBackend) -> None:
    """Warn that an in-memory broadcast in one of several `trioapi run --workers` misses clients."""
    workers = os.environ.get("TRIOAPI_WORKERS", "1")  # set by trioapi run for its workers
    if isinstance(backend, MemoryBackend) and workers.isdigit() and int(workers) > 1:
        logger.warning(
            "An in-memory broadcast with %s worker processes: each worker broadcasts to its own "
            "clients only, so rooms are split between processes. Use a redis:// URL to share them.",
            workers,
        )


class Broadcast:
    """Publish/subscribe between the tasks of a process, or of many processes via Redis.

    Open it once per process, normally in the application's lifespan::

        broadcast = Broadcast(os.environ.get("BROADCAST_URL", "memory://"))

        @asynccontextmanager
        async def lifespan(app):
            async with broadcast:
                yield

    Entering starts the backend's single listener task (for Redis: connects and
    PINGs, raising ``BackendUnavailable`` if that fails). Messages from the
    listener are fanned out to local subscribers by enqueueing into their bounded
    buffers: a publisher never waits for a subscriber, and a slow subscriber never
    delays the others. Messages one task publishes on one channel arrive in the
    order it published them. Delivery is at most once (see ``Subscriber.gaps``).
    """

    def __init__(self, url: str = "memory://", *, backend: BroadcastBackend | None = None) -> None:
        #: The URL the backend was chosen from (informational when ``backend`` is given).
        self.url = url
        self._backend = backend if backend is not None else backend_from_url(url)
        # channel -> local sinks; dicts keep attachment order, so fan-out order is stable.
        self._channels: dict[str, dict[_Sink, None]] = {}
        # channel -> set once the backend confirmed the subscription, for late joiners.
        self._ready: dict[str, trio.Event] = {}
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def backend(self) -> BroadcastBackend:
        """The backend this broadcast publishes through."""
        return self._backend

    @property
    def channels(self) -> list[str]:
        """The channels with at least one local subscriber."""
        return list(self._channels)

    async def __aenter__(self) -> Broadcast:
        if self._stack is not None:
            raise RuntimeError("This Broadcast is already open; enter it once")
        stack = AsyncExitStack()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            await nursery.start(self._backend.run, self._deliver, self._report_gap)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._nursery = nursery
        _warn_if_split_between_workers(self._backend)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, nursery = self._stack, self._nursery
        assert stack is not None and nursery is not None
        self._stack = self._nursery = None
        for sinks in self._channels.values():
            for sink in sinks:
                sink._close()
        # Let the backend close its connections itself; cancel it only if it hangs.
        self._backend.stop()
        nursery.cancel_scope.deadline = min(
            nursery.cancel_scope.deadline, trio.current_time() + BACKEND_STOP_TIMEOUT
        )
        try:
            return await stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The listener's nursery wraps whatever left the `async with` body in a
            # group; when that is all there is, let the body's own exception
            # through unwrapped, as if no nursery were involved.
            if exc is not None and group.exceptions == (exc,):
                return False
            raise

    def _check_open(self) -> None:
        if self._nursery is None:
            raise RuntimeError(
                "This Broadcast is not open: enter it first (`async with broadcast:`, "
                "usually in the app's lifespan)"
            )

    async def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to every subscriber of ``channel``, in this and (Redis) other processes.

        ``message`` is a ``str``, ``bytes``, or a JSON-serialisable value (``TypeError``
        otherwise). Returns once the message is handed to the backend; it never
        waits for a subscriber. With Redis, raises ``BackendUnavailable`` while the
        connection is down (the message is not sent).
        """
        self._check_open()
        await self._backend.publish(channel, message)

    @asynccontextmanager
    async def subscribe(
        self,
        channel: str,
        *,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        policy: OverflowPolicy | PolicyName = OverflowPolicy.DISCONNECT,
    ) -> AsyncIterator[Subscriber]:
        """Receive what is published on ``channel`` while the block runs.

        Once the block is entered, every later publish reaches this subscriber
        (with Redis: as soon as Redis confirmed the subscription, unless the
        connection is down). ``max_backlog`` bounds the events buffered for it;
        ``policy`` says what happens beyond that (``"disconnect"`` by default,
        which ends iteration with ``SubscriberOverflow``, close code 1013).
        """
        subscriber = Subscriber(channel, max_backlog, policy)
        await self._attach(channel, subscriber)
        try:
            yield subscriber
        finally:
            self._detach(channel, subscriber)
            subscriber._close()

    # -- the local registry, shared by Subscriber and ConnectionHub ---------------

    async def _attach(self, channel: str, sink: _Sink) -> None:
        """Register ``sink`` for ``channel``; subscribe the backend for the first one."""
        self._check_open()
        sinks = self._channels.setdefault(channel, {})
        first = not sinks
        sinks[sink] = None
        try:
            if first:
                ready = self._ready[channel] = trio.Event()
                try:
                    await self._backend.subscribe(channel)
                finally:
                    ready.set()
            elif (pending := self._ready.get(channel)) is not None:
                await pending.wait()
        except BaseException:
            self._detach(channel, sink)
            raise

    def _detach(self, channel: str, sink: _Sink) -> None:
        """Unregister ``sink``; unsubscribe the backend after the last one. Idempotent."""
        sinks = self._channels.get(channel)
        if sinks is None or sink not in sinks:
            return
        del sinks[sink]
        if not sinks:
            del self._channels[channel]
            self._ready.pop(channel, None)
            if self._nursery is not None:
                self._backend.unsubscribe(channel)

    # -- called by the backend's listener: the hot path ---------------------------

    def _deliver(self, channel: str, message: Message) -> None:
        sinks = self._channels.get(channel)
        if sinks:
            event = Event(channel, message)
            for sink in sinks:
                sink._push(event)

    def _report_gap(self) -> None:
        for sinks in self._channels.values():
            for sink in sinks:
                sink._gap()

    def __repr__(self) -> str:
        state = "open" if self._nursery is not None else "closed"
        return f"<Broadcast {self.url!r} {state} channels={len(self._channels)}>"
