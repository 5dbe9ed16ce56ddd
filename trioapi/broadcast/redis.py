"""``redis://host:port/db``: broadcast between processes and machines through Redis pub/sub.

Needs the ``redis`` extra (``pip install trioapi[redis]``, which brings coredis 6,
a Redis client that runs on Trio) and Redis 6 or later.

How it behaves, and why:

* **One listener per process.** A single task owns one pub/sub connection,
  subscribes it to the channels that have local subscribers (and unsubscribes
  when the last one leaves), and hands every message to ``Broadcast``, which
  enqueues it into the subscribers' bounded buffers. coredis keeps received
  messages in an *unbounded* buffer of its own; the listener drains it as fast as
  messages arrive, so that buffer stays near empty and only the bounded ones grow.
* **Fails fast at startup.** Entering ``Broadcast`` PINGs Redis within
  ``connect_timeout`` and raises ``BackendUnavailable`` if that fails, rather
  than retrying forever as coredis's pub/sub would by default.
* **Survives a Redis restart.** When the connection is lost the listener logs one
  warning, tells every subscriber (``Subscriber.gaps``), reconnects with
  exponential backoff, resubscribes every channel and logs one line when it is
  back. Redis pub/sub does not keep messages: what was published during the
  outage is lost. ``publish`` raises ``BackendUnavailable`` while Redis is down.
* **Types survive the trip.** A message is sent with a two-byte header saying
  whether it was ``str``, ``bytes`` or JSON, so each subscriber gets back the type
  that was published. A message without that header (published by another Redis
  client) is delivered as ``bytes``, unchanged.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import trio

from trioapi.broadcast._base import (
    BackendUnavailable,
    BroadcastBackend,
    Deliver,
    Message,
    ReportGap,
    dump_json,
)

if TYPE_CHECKING:
    import coredis
    from coredis.patterns.pubsub import PubSub

__all__ = ["RedisBackend", "decode", "encode"]

logger = logging.getLogger("trioapi.broadcast")

# Header of each payload: a NUL (which text rarely starts with) and the type.
_STR = b"\x00s"
_BYTES = b"\x00b"
_JSON = b"\x00j"


def encode(message: Message) -> bytes:
    """The Redis payload for ``message``: a type header, then its bytes."""
    if isinstance(message, str):
        return _STR + message.encode("utf-8")
    if isinstance(message, bytes | bytearray | memoryview):
        return _BYTES + bytes(message)
    return _JSON + dump_json(message).encode("utf-8")


def decode(payload: bytes) -> Message:
    """The message ``encode`` made ``payload`` from (``bytes`` as is, without a header)."""
    header = payload[:2]
    if header == _STR:
        return payload[2:].decode("utf-8")
    if header == _JSON:
        return json.loads(payload[2:])
    if header == _BYTES:
        return payload[2:]
    return payload


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside ``error``, however deeply coredis's task groups nested them."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _describe(error: BaseException) -> str:
    return "; ".join(str(leaf) or type(leaf).__name__ for leaf in _leaves(error))


def _import_coredis() -> Any:
    try:
        import coredis
    except ImportError:
        raise ImportError(
            "The redis:// broadcast backend needs coredis: pip install 'trioapi[redis]'"
        ) from None
    return coredis


class RedisBackend(BroadcastBackend):
    """Redis pub/sub through coredis; see the module docstring for its behaviour.

    ``connect_timeout`` bounds the first connection (and each reconnection
    attempt); reconnections wait ``min_backoff`` seconds, doubling up to
    ``max_backoff``.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self._coredis = _import_coredis()
        import anyio  # coredis runs on anyio: it is there whenever coredis is

        self.url = url
        self.connect_timeout = connect_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        #: ``True`` while the listener holds a working pub/sub connection.
        self.connected = False
        #: Connections lost since startup (each one a possible gap in delivery).
        self.outages = 0
        self._client: coredis.Redis[bytes] | None = None
        # Channels with local subscribers, and those Redis has confirmed on the
        # current connection. Only the listener's reconcile task sends SUBSCRIBE
        # and UNSUBSCRIBE, so they never race each other.
        self._wanted: set[str] = set()
        self._active: set[str] = set()
        self._confirmed: dict[str, trio.Event] = {}
        self._changed = trio.Event()
        self._stopped = trio.Event()
        errors = self._coredis.exceptions
        # anyio's resource errors: coredis 6.9 lets them out when the socket under
        # a pub/sub connection is closed at an awkward moment.
        self._connection_errors: tuple[type[BaseException], ...] = (
            errors.ConnectionError,
            TimeoutError,
            anyio.ClosedResourceError,
            anyio.BrokenResourceError,
        )

    def _unavailable(self, what: str, group: BaseExceptionGroup[Any]) -> BackendUnavailable:
        causes = _describe(group)
        return BackendUnavailable(
            f"{what} Redis at {self.url} ({causes}). Is redis-server running, and is BROADCAST_URL right?"
        )

    async def run(
        self,
        deliver: Deliver,
        report_gap: ReportGap,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect (failing fast), then listen, reconnecting forever after the first success."""
        client: coredis.Redis[bytes] = self._coredis.Redis.from_url(
            self.url, decode_responses=False, connect_timeout=self.connect_timeout
        )
        try:
            async with client:
                try:
                    with trio.fail_after(self.connect_timeout):
                        await client.ping()
                except* trio.TooSlowError as group:
                    raise self._unavailable("Cannot connect to", group) from None
                except* self._connection_errors as group:
                    raise self._unavailable("Cannot connect to", group) from None
                self._client = client
                await self._listen(client, deliver, report_gap, task_status)
        except* BackendUnavailable as group:
            # Raised inside the client's connection pool, which wrapped it in groups:
            # the application should see the one clear error.
            raise _leaves(group)[0] from None
        except* self._connection_errors as group:
            raise self._unavailable("Cannot connect to", group) from None
        finally:
            self._client = None
            self.connected = False

    async def _listen(
        self,
        client: coredis.Redis[bytes],
        deliver: Deliver,
        report_gap: ReportGap,
        task_status: trio.TaskStatus[None],
    ) -> None:
        started = False
        attempt = 0
        while not self._stopped.is_set():
            try:
                # retry_policy=None: coredis would otherwise retry a dead server
                # forever inside the pub/sub, and we would never learn of the gap.
                async with client.pubsub(retry_policy=None, ignore_subscribe_messages=True) as pubsub:
                    await self._resubscribe(pubsub)
                    if attempt:
                        logger.warning("Reconnected to Redis at %s; broadcast resumed", self.url)
                    attempt = 0
                    self.connected = True
                    if not started:
                        task_status.started()
                        started = True
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._reconcile, pubsub)
                        nursery.start_soon(self._cancel_on_stop, nursery.cancel_scope)
                        await self._drain(pubsub, deliver)
                # Leaving the pub/sub block normally (not by cancellation) lets
                # coredis unsubscribe and release the connection cleanly.
            except* self._connection_errors as group:
                if not started:
                    raise self._unavailable("Cannot subscribe through", group) from None
                self._on_lost(group, report_gap)
            attempt += 1
            with trio.move_on_after(min(self.max_backoff, self.min_backoff * 2 ** min(attempt - 1, 30))):
                await self._stopped.wait()

    async def _cancel_on_stop(self, scope: trio.CancelScope) -> None:
        await self._stopped.wait()
        scope.cancel()

    def stop(self) -> None:
        """Leave the pub/sub connection and close the client."""
        self._stopped.set()

    def _on_lost(self, group: BaseExceptionGroup[Any], report_gap: ReportGap) -> None:
        if self.connected and not self._stopped.is_set():
            # Log the outage once, not once per reconnection attempt.
            self.outages += 1
            logger.warning(
                "Lost connection to Redis at %s (%s); reconnecting with backoff. "
                "Messages published until it is back are lost.",
                self.url,
                _describe(group),
            )
            report_gap()
        self.connected = False
        self._active.clear()

    async def _drain(self, pubsub: PubSub[bytes], deliver: Deliver) -> None:
        # The hot path: one message from coredis's buffer, decoded once, handed to
        # Broadcast for fan-out (which only enqueues). No await other than the read.
        while True:
            message = await pubsub.get_message()
            if message is not None and message["type"] == "message":
                channel = message["channel"]
                deliver(
                    channel.decode("utf-8") if isinstance(channel, bytes) else channel,
                    decode(message["data"]),  # type: ignore[arg-type]
                )

    async def _resubscribe(self, pubsub: PubSub[bytes]) -> None:
        channels = set(self._wanted)
        if channels:
            await pubsub.subscribe(*channels)
        self._active = channels
        for channel in channels:
            self._confirmed.setdefault(channel, trio.Event()).set()

    async def _reconcile(self, pubsub: PubSub[bytes]) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            new = self._wanted - self._active
            if new:
                await pubsub.subscribe(*new)
                self._active |= new
                for channel in new:
                    self._confirmed.setdefault(channel, trio.Event()).set()
            gone = self._active - self._wanted
            if gone:
                self._active -= gone
                await pubsub.unsubscribe(*gone)

    async def publish(self, channel: str, message: Message) -> None:
        """PUBLISH ``message`` with its type header; ``BackendUnavailable`` while Redis is down."""
        payload = encode(message)
        client = self._client
        if client is None:
            raise RuntimeError("This RedisBackend is not running: publish inside `async with Broadcast(...)`")
        try:
            await client.publish(channel, payload)
        except* self._connection_errors as group:
            raise self._unavailable("Cannot publish to", group) from None

    async def subscribe(self, channel: str) -> None:
        """Ask the listener to SUBSCRIBE; wait for Redis's confirmation while connected."""
        self._wanted.add(channel)
        if channel in self._active:
            # Still subscribed: the last subscriber left and this one came back
            # before the listener got round to UNSUBSCRIBE, which it now won't send.
            await trio.lowlevel.checkpoint()
            return
        confirmed = self._confirmed.get(channel)
        if confirmed is None or confirmed.is_set():
            confirmed = self._confirmed[channel] = trio.Event()
        self._changed.set()
        if self.connected:
            # Bounded: if Redis goes away meanwhile, the reconnection resubscribes.
            with trio.move_on_after(self.connect_timeout):
                await confirmed.wait()
        else:
            await trio.lowlevel.checkpoint()

    def unsubscribe(self, channel: str) -> None:
        """Ask the listener to UNSUBSCRIBE, without waiting."""
        self._wanted.discard(channel)
        self._confirmed.pop(channel, None)
        self._changed.set()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<RedisBackend {self.url} {state} channels={len(self._wanted)}>"
