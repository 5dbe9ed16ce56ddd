"""What every part of ``trioapi.broadcast`` shares: events, policies, errors, the backend interface.

The bounded ``Backlog`` lives here too because two places need exactly the same
thing: a ``Subscriber`` buffers events for one consumer, and the hub buffers
frames for one WebSocket. Both must accept a message without ever waiting (the
publisher never awaits a consumer) and both apply the same overflow policies.
"""

from __future__ import annotations

import abc
import enum
import json
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import attrs
import trio

from trioapi.exceptions import WebSocketException

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "BackendUnavailable",
    "Backlog",
    "BroadcastBackend",
    "BroadcastError",
    "Event",
    "Message",
    "OverflowPolicy",
    "PolicyName",
    "SubscriberOverflow",
    "dump_json",
]

#: A message as published: a ``str`` (delivered as ``str``), ``bytes`` (delivered
#: as ``bytes``) or anything ``json.dumps`` accepts (delivered as its JSON round
#: trip, so a tuple comes back as a list and dict keys as strings).
Message: TypeAlias = Any

#: How many undelivered messages one subscriber or one hub member may hold.
DEFAULT_MAX_BACKLOG = 100

#: Close code for a consumer that could not keep up: 1013 "Try Again Later".
#: The client may reconnect (and should resynchronise, since it missed messages).
TRY_AGAIN_LATER = 1013

T = TypeVar("T")


def dump_json(message: Message) -> str:
    """``message`` as compact JSON text (non-ASCII kept), or a ``TypeError`` naming what to publish."""
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"publish() takes str, bytes or a JSON-serialisable value; {type(message).__name__} is not: {exc}"
        ) from None


class OverflowPolicy(enum.StrEnum):
    """What happens when a message arrives for a consumer whose backlog is full.

    Applied when the message is enqueued, so a publisher never waits for a slow
    consumer and the consumer's memory stays bounded by ``max_backlog``.
    Every message not delivered because of it is counted in ``dropped``.
    """

    #: Discard the oldest buffered message to make room: the consumer sees the most
    #: recent ``max_backlog`` messages. Right for "latest value" feeds (tickers).
    DROP_OLDEST = "drop_oldest"
    #: Discard the new message: the consumer keeps what it had. Rarely what you want
    #: for live data, but cheap and predictable.
    DROP_NEWEST = "drop_newest"
    #: Stop delivering and end the consumer with ``SubscriberOverflow`` (the hub
    #: closes the WebSocket with 1013 Try Again Later). Right when a gap would
    #: leave the client in a wrong state, as in a chat: it reconnects and resyncs.
    DISCONNECT = "disconnect"


#: The policy names accepted wherever an ``OverflowPolicy`` is.
PolicyName: TypeAlias = Literal["drop_oldest", "drop_newest", "disconnect"]


@attrs.frozen(slots=True)
class Event:
    """One published message, as a subscriber receives it.

    The same ``Event`` object is handed to every local subscriber of the channel;
    treat ``message`` as read-only.
    """

    #: The channel it was published on.
    channel: str
    #: The message: ``str``, ``bytes``, or the JSON round trip of what was published.
    message: Message


class BroadcastError(Exception):
    """Base class of the errors raised by ``trioapi.broadcast``."""


class BackendUnavailable(BroadcastError, ConnectionError):
    """The broker (Redis) cannot be reached.

    Raised when entering ``Broadcast`` if the first connection fails (startup
    fails instead of hanging), and by ``publish`` while the connection is down.
    """


class SubscriberOverflow(BroadcastError, WebSocketException):
    """A consumer fell ``max_backlog`` messages behind under the ``"disconnect"`` policy.

    Raised by the subscriber's iteration. It is a ``WebSocketException`` with code
    1013 (Try Again Later), so left uncaught in a WebSocket handler it closes that
    connection with 1013.
    """

    def __init__(self, channel: str, max_backlog: int) -> None:
        WebSocketException.__init__(
            self, TRY_AGAIN_LATER, f"too slow: more than {max_backlog} undelivered messages"
        )
        self.channel = channel
        self.max_backlog = max_backlog


class Backlog(Generic[T]):
    """A bounded FIFO between one producer that must never wait and one consumer.

    ``put`` is synchronous and O(1); it applies the overflow policy when the
    backlog is full. ``get`` waits for an item. After ``close`` the remaining items
    can still be read, then ``get`` raises ``trio.EndOfChannel``; after an
    overflow under ``"disconnect"`` the items are discarded and ``get`` raises
    ``on_overflow()`` at once.
    """

    __slots__ = ("_abort", "_items", "_waiter", "closed", "dropped", "max_backlog", "overflowed", "policy")

    def __init__(self, max_backlog: int, policy: OverflowPolicy | PolicyName) -> None:
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be at least 1, not {max_backlog!r}")
        self.max_backlog = max_backlog
        self.policy = OverflowPolicy(policy)
        self._items: deque[T] = deque()
        # The one consumer, while it waits. Woken by a plain reschedule: a fan-out
        # wakes a thousand of these per message, and a ParkingLot costs more.
        self._waiter: trio.lowlevel.Task | None = None
        self._abort = self._forget_waiter  # bound once, not once per wait
        #: Messages not delivered because of the overflow policy.
        self.dropped = 0
        #: ``True`` once the ``"disconnect"`` policy has cut this consumer off.
        self.overflowed = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def idle(self) -> bool:
        """Whether the consumer is waiting with nothing in hand: an item now would be the next it sees."""
        return self._waiter is not None and not self._items

    def put(self, item: T) -> bool:
        """Add ``item`` without waiting; return ``False`` if the consumer is cut off or closed."""
        items = self._items
        if self.closed:
            return False
        if len(items) >= self.max_backlog:
            self.dropped += 1
            if self.policy is OverflowPolicy.DROP_OLDEST:
                items.popleft()
            elif self.policy is OverflowPolicy.DROP_NEWEST:
                return True
            else:
                self.overflowed = True
                self.closed = True
                # The consumer will not read these any more: free them now.
                items.clear()
                self._wake()
                return False
        items.append(item)
        if self._waiter is not None:
            self._wake()
        return True

    def _wake(self) -> None:
        task, self._waiter = self._waiter, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _forget_waiter(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def get(self, on_overflow: Callable[[], BaseException]) -> T:
        """The oldest item, waiting for one if needed (one consumer at a time)."""
        if self._items:
            # Ready at once: still yield, as trio expects of every async call, so
            # a consumer that is never short of items cannot starve other tasks.
            await trio.lowlevel.checkpoint()
        while not self._items:
            if self.overflowed:
                raise on_overflow()
            if self.closed:
                raise trio.EndOfChannel
            if self._waiter is not None:
                raise trio.BusyResourceError("another task is already waiting on this backlog")
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        return self._items.popleft()

    def get_nowait(self) -> T:
        """The oldest item; ``trio.WouldBlock`` if there is none yet.

        For a consumer that has just awaited something else (a socket send), and
        so has already yielded: draining without a second trip through the
        scheduler per item is what keeps a thousand-member fan-out cheap.
        """
        if not self._items:
            raise trio.WouldBlock
        return self._items.popleft()

    def close(self) -> None:
        """No more items will be put; the consumer drains what is left, then ends."""
        self.closed = True
        self._wake()


#: Called by a backend's listener for each message it receives.
Deliver: TypeAlias = Callable[[str, Message], None]
#: Called by a backend when messages may have been lost (connection to the broker lost).
ReportGap: TypeAlias = Callable[[], None]


class BroadcastBackend(abc.ABC):
    """Moves published messages to this process's listener; ``Broadcast`` does the rest.

    A backend has one listener per process (``run``), which hands every message
    it receives to ``deliver``, synchronously. ``Broadcast`` reference-counts local
    subscribers and calls ``subscribe`` for the first one of a channel and
    ``unsubscribe`` after the last.
    """

    @abc.abstractmethod
    async def run(
        self,
        deliver: Deliver,
        report_gap: ReportGap,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect, call ``task_status.started()``, then listen until ``stop`` (or cancellation).

        Must raise ``BackendUnavailable`` before ``started()`` if the broker
        cannot be reached, so the application fails to start with a clear error.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask ``run`` to close its connections and return.

        ``Broadcast`` calls this on exit and cancels ``run`` only if it has not
        returned within a few seconds: a client library shut down by cancellation
        may not get to close its connections cleanly.
        """

    @abc.abstractmethod
    async def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to every process subscribed to ``channel``."""

    async def subscribe(self, channel: str) -> None:  # noqa: B027 -- optional hook, no-op by default
        """Start receiving ``channel``; return once later publishes will be delivered."""

    def unsubscribe(self, channel: str) -> None:  # noqa: B027 -- optional hook, no-op by default
        """Stop receiving ``channel`` (without waiting for the broker)."""
