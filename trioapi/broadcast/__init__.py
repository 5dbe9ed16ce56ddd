"""Broadcast messages to subscribers and WebSocket rooms, in one process or many.

* ``Broadcast(url)``: publish/subscribe, with ``memory://`` (one process) or
  ``redis://host:port/db`` (many processes and machines) as the backend.
* ``ConnectionHub``: rooms of WebSockets (join, leave, send to one, broadcast
  to a room), each member fed through its own bounded outbox.

Every consumer has a bounded buffer and an ``OverflowPolicy``; publishing never
waits for a consumer. Delivery is at most once. See ``docs/guides/broadcast.md``.
"""

from trioapi.broadcast._base import (
    DEFAULT_MAX_BACKLOG,
    BackendUnavailable,
    BroadcastBackend,
    BroadcastError,
    Event,
    Message,
    OverflowPolicy,
    PolicyName,
    SubscriberOverflow,
)
from trioapi.broadcast._broadcast import Broadcast, Subscriber
from trioapi.broadcast.hub import ConnectionHub, ConnectionManager, Member
from trioapi.broadcast.memory import MemoryBackend
from trioapi.broadcast.redis import RedisBackend  # coredis itself is imported on first use

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "BackendUnavailable",
    "Broadcast",
    "BroadcastBackend",
    "BroadcastError",
    "ConnectionHub",
    "ConnectionManager",
    "Event",
    "Member",
    "MemoryBackend",
    "Message",
    "OverflowPolicy",
    "PolicyName",
    "RedisBackend",
    "Subscriber",
    "SubscriberOverflow",
]
