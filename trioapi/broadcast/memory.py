"""``memory://``: broadcast between the tasks of one process."""

from __future__ import annotations

import json

import trio

from trioapi.broadcast._base import BroadcastBackend, Deliver, Message, ReportGap, dump_json

__all__ = ["MemoryBackend"]


def normalize(message: Message) -> Message:
    """``message`` as a subscriber receives it on any backend.

    ``str`` and ``bytes`` pass through; anything else takes the JSON round trip it
    would take through Redis, once per publish (not per subscriber), so code
    tested on ``memory://`` behaves the same on ``redis://`` and a subscriber
    never shares a mutable object with the publisher.
    """
    kind = type(message)
    if kind is str or kind is bytes:
        return message
    if isinstance(message, bytearray | memoryview):
        return bytes(message)
    return json.loads(dump_json(message))


class MemoryBackend(BroadcastBackend):
    """Delivers inside this process only: no broker, no listener, nothing to lose.

    ``publish`` fans out synchronously before it returns, so the order in which
    one task publishes is the order in which every subscriber receives.
    """

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._stopped = trio.Event()

    async def run(
        self,
        deliver: Deliver,
        report_gap: ReportGap,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept publishes until stopped."""
        self._deliver = deliver
        self._stopped = trio.Event()
        try:
            task_status.started()
            await self._stopped.wait()
        finally:
            self._deliver = None

    def stop(self) -> None:
        """Stop accepting publishes."""
        self._stopped.set()

    async def publish(self, channel: str, message: Message) -> None:
        """Hand ``message`` to every local subscriber of ``channel`` (enqueue only)."""
        deliver = self._deliver
        if deliver is None:
            raise RuntimeError("MemoryBackend is not running: publish inside `async with Broadcast(...)`")
        deliver(channel, normalize(message))
        await trio.lowlevel.checkpoint()
