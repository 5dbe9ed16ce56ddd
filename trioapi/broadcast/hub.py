"""``ConnectionHub``: rooms of WebSockets, the tutorial ``ConnectionManager`` made safe to deploy.

The pattern every FastAPI tutorial copies keeps a list of sockets and awaits
``send_text`` on each in turn. One client that stops reading then stalls every
broadcast, a client that vanished raises inside somebody else's handler, and only
clients of one worker process are reached. Here:

* Each member (one WebSocket) has a bounded **outbox** and a **sender task**,
  started with ``websocket.start_soon`` so it lives and dies with the connection.
  ``broadcast`` never awaits a socket: it enqueues into outboxes, or, on the
  native transport, writes at once to a member whose sender waits with nothing
  in hand when its socket takes the frame without waiting (``write_now``).
* A full outbox applies the member's ``OverflowPolicy`` at once: drop the oldest
  frame, drop the new one, or (the default) cut the member off and close its
  WebSocket with **1013 Try Again Later**.
* A member whose peer has gone is pruned from every room by its sender task
  (which watches ``wait_disconnected``); a broadcast never raises because of it.
* Given a ``Broadcast``, the hub subscribes to a room's channel while the room has
  local members, and ``broadcast`` publishes through it, so members connected to
  every worker process (and machine, with Redis) receive it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from trioapi.broadcast._base import (
    DEFAULT_MAX_BACKLOG,
    TRY_AGAIN_LATER,
    Backlog,
    Event,
    Message,
    OverflowPolicy,
    PolicyName,
    SubscriberOverflow,
    dump_json,
)
from trioapi.websockets import WebSocketDisconnect, WebSocketState, message_sender, write_now

if TYPE_CHECKING:
    from trioapi.broadcast._broadcast import Broadcast
    from trioapi.websockets import WebSocket

__all__ = ["ConnectionHub", "ConnectionManager", "Member"]

logger = logging.getLogger("trioapi.broadcast")

#: A frame as it waits in an outbox: ``str`` goes out as text, ``bytes`` as binary.
Frame = str | bytes


def to_frame(message: Message) -> Frame:
    """``message`` as one WebSocket frame: str and bytes as they are, anything else as JSON text."""
    if isinstance(message, str | bytes):
        return message
    if isinstance(message, bytearray | memoryview):
        return bytes(message)
    return dump_json(message)


class Member:
    """One WebSocket's place in a hub: its outbox, its rooms and its counters.

    Read-only for application code; useful in tests and metrics.
    """

    __slots__ = ("_eager", "_outbox", "_scope", "_send", "rooms", "websocket")

    def __init__(self, websocket: WebSocket, max_backlog: int, policy: OverflowPolicy | PolicyName) -> None:
        #: The connection this member sends to.
        self.websocket = websocket
        #: The rooms it is in.
        self.rooms: set[str] = set()
        self._outbox: Backlog[Frame] = Backlog(max_backlog, policy)
        # Sends a ready-made frame; and whether its transport can ever write one
        # without waiting (write_now).
        self._send, self._eager = message_sender(websocket)
        # Cancelled to stop the sender at once when the member is cut off; it
        # may be cancelled before the sender task has even started.
        self._scope = trio.CancelScope()

    @property
    def backlog(self) -> int:
        """Frames waiting to be sent (never more than ``max_backlog``)."""
        return len(self._outbox)

    @property
    def max_backlog(self) -> int:
        """The most frames this member's outbox holds."""
        return self._outbox.max_backlog

    @property
    def policy(self) -> OverflowPolicy:
        """What happens to a frame that arrives while the outbox is full."""
        return self._outbox.policy

    @property
    def dropped(self) -> int:
        """Frames not sent to this member because its outbox was full."""
        return self._outbox.dropped

    @property
    def overflowed(self) -> bool:
        """``True`` once the ``"disconnect"`` policy has cut this member off."""
        return self._outbox.overflowed

    def _put(self, frame: Frame) -> None:
        outbox = self._outbox
        # A sender waiting with nothing in hand would write this frame next: on a
        # transport that can, write it now, with no task switch per member.
        if self._eager and outbox.idle and write_now(self.websocket, frame):
            return
        if not outbox.put(frame) and outbox.overflowed:
            self._scope.cancel()

    def __repr__(self) -> str:
        return (
            f"<Member {self.websocket!r} rooms={sorted(self.rooms)} "
            f"backlog={self.backlog}/{self.max_backlog} dropped={self.dropped}>"
        )


class _Room:
    """The local members of one room; also the hub's sink for the room's broadcast channel."""

    __slots__ = ("_members", "_snapshot", "channel", "gaps", "name", "ready")

    def __init__(self, name: str, channel: str) -> None:
        self.name = name
        self.channel = channel
        self._members: dict[Member, None] = {}
        # Fan-out iterates this tuple, rebuilt only when membership changes, so a
        # member leaving mid-broadcast never mutates what is being iterated.
        self._snapshot: tuple[Member, ...] = ()
        self.ready: trio.Event | None = None
        self.gaps = 0

    def add(self, member: Member) -> None:
        self._members[member] = None
        self._snapshot = tuple(self._members)

    def discard(self, member: Member) -> None:
        if member in self._members:
            del self._members[member]
            self._snapshot = tuple(self._members)

    def __len__(self) -> int:
        return len(self._snapshot)

    def fan_out(self, frame: Frame) -> None:
        for member in self._snapshot:
            member._put(frame)

    # -- the Broadcast sink interface --

    def _push(self, event: Event) -> None:
        self.fan_out(to_frame(event.message))

    def _gap(self) -> None:
        self.gaps += 1

    def _close(self) -> None:
        pass


class ConnectionHub:
    """Rooms of WebSockets: ``join``, ``leave``, ``send_personal``, ``broadcast``.

    Without ``broadcast`` the hub reaches the members connected to this process.
    With a ``Broadcast`` (opened in the lifespan), ``broadcast(room, ...)``
    publishes on the channel ``channel_prefix + room`` and every process's hub
    delivers to its own members of that room.

    Each member gets an outbox of ``max_backlog`` frames and the overflow
    ``policy`` (``"disconnect"`` by default: the WebSocket is closed with 1013
    Try Again Later when its outbox is full, since a chat client that silently
    missed messages would show a wrong conversation; it should reconnect).
    ``join`` and ``send_personal`` may override both for one connection.

    All members of a hub must be served by a trioapi app: the sender task is
    started with ``websocket.start_soon``.
    """

    def __init__(
        self,
        broadcast: Broadcast | None = None,
        *,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        policy: OverflowPolicy | PolicyName = OverflowPolicy.DISCONNECT,
        channel_prefix: str = "trioapi.hub:",
        close_timeout: float = 5.0,
    ) -> None:
        Backlog[Frame](max_backlog, policy)  # validate both now, not at the first join
        self._broadcast = broadcast
        self.max_backlog = max_backlog
        self.policy = OverflowPolicy(policy)
        self.channel_prefix = channel_prefix
        #: How long the sender waits for the 1013 close of a cut-off member.
        self.close_timeout = close_timeout
        self._members: dict[WebSocket, Member] = {}
        self._rooms: dict[str, _Room] = {}

    # -- observing -----------------------------------------------------------

    @property
    def rooms(self) -> list[str]:
        """The rooms with at least one member connected to this process."""
        return list(self._rooms)

    def members(self, room: str) -> list[WebSocket]:
        """The WebSockets of this process in ``room``."""
        found = self._rooms.get(room)
        return [member.websocket for member in found._snapshot] if found is not None else []

    def member(self, websocket: WebSocket) -> Member | None:
        """The hub's record of ``websocket`` (outbox size, drops, rooms), or ``None``."""
        return self._members.get(websocket)

    def __len__(self) -> int:
        """The number of connections this hub serves."""
        return len(self._members)

    # -- membership ----------------------------------------------------------

    async def join(
        self,
        room: str,
        websocket: WebSocket,
        *,
        max_backlog: int | None = None,
        policy: OverflowPolicy | PolicyName | None = None,
    ) -> None:
        """Add an accepted ``websocket`` to ``room``; it leaves by itself when it disconnects.

        The first ``join`` or ``send_personal`` of a connection starts its sender
        task; ``max_backlog`` and ``policy`` (default: the hub's) apply from then on.
        With a ``Broadcast``, returns once the room's channel is subscribed, so
        every later broadcast reaches this member.
        """
        member = self._member_for(websocket, max_backlog, policy)
        if room in member.rooms:
            await trio.lowlevel.checkpoint()
            return
        found = self._rooms.get(room)
        member.rooms.add(room)
        if found is not None:
            found.add(member)
            if found.ready is not None and not found.ready.is_set():
                await found.ready.wait()
            else:
                await trio.lowlevel.checkpoint()
            return
        created = self._rooms[room] = _Room(room, self.channel_prefix + room)
        created.add(member)
        if self._broadcast is None:
            await trio.lowlevel.checkpoint()
            return
        created.ready = trio.Event()
        try:
            await self._broadcast._attach(created.channel, created)
        except BaseException:
            self.leave(room, websocket)
            raise
        finally:
            created.ready.set()

    def leave(self, room: str, websocket: WebSocket) -> None:
        """Remove ``websocket`` from ``room`` (no-op if it is not there).

        The connection stays in its other rooms and can still get ``send_personal``.
        """
        member = self._members.get(websocket)
        if member is None or room not in member.rooms:
            return
        member.rooms.discard(room)
        self._remove_from_room(room, member)

    def _remove_from_room(self, room: str, member: Member) -> None:
        found = self._rooms.get(room)
        if found is None:
            return
        found.discard(member)
        if not found:
            del self._rooms[room]
            if self._broadcast is not None:
                self._broadcast._detach(found.channel, found)

    def _member_for(
        self,
        websocket: WebSocket,
        max_backlog: int | None,
        policy: OverflowPolicy | PolicyName | None,
    ) -> Member:
        member = self._members.get(websocket)
        if member is not None:
            return member
        if websocket.application_state is not WebSocketState.CONNECTED:
            raise RuntimeError(
                f"Cannot add a WebSocket that is {websocket.application_state.name} to a hub: "
                'call "await websocket.accept()" first'
            )
        member = Member(
            websocket,
            self.max_backlog if max_backlog is None else max_backlog,
            self.policy if policy is None else policy,
        )
        # Raises RuntimeError outside a trioapi-served handler, before we register it.
        websocket.start_soon(self._serve, member, name=f"hub sender for {websocket!r}")
        self._members[websocket] = member
        return member

    def _prune(self, member: Member) -> None:
        """Forget ``member`` everywhere; called once, by its sender task, however it ends."""
        if self._members.get(member.websocket) is member:
            del self._members[member.websocket]
        for room in member.rooms:
            self._remove_from_room(room, member)
        member.rooms.clear()
        member._outbox.close()

    # -- sending -------------------------------------------------------------

    async def send_personal(self, websocket: WebSocket, message: Message) -> bool:
        """Queue ``message`` for ``websocket`` alone, after what is already queued for it.

        A ``str`` is sent as a text frame, ``bytes`` as binary, anything else as
        JSON text. Returns ``False`` (and sends nothing) if the connection has gone.
        """
        member = self._members.get(websocket)
        if member is None:
            if websocket.application_state is not WebSocketState.CONNECTED:
                await trio.lowlevel.checkpoint()
                return False
            member = self._member_for(websocket, None, None)
        member._put(to_frame(message))
        await trio.lowlevel.checkpoint()
        return not member._outbox.closed

    async def broadcast(self, room: str, message: Message) -> None:
        """Queue ``message`` for every member of ``room`` (in every process, given a ``Broadcast``).

        It never waits for a member's socket (a frame goes to the member's
        outbox, or, on the native transport, out at once when its socket takes
        it without waiting) and never raises because a member has gone. With a
        Redis ``Broadcast`` it raises ``BackendUnavailable`` while Redis is
        down. ``str`` goes out as a text frame, ``bytes`` as binary, anything
        else as JSON text (encoded once, not once per member).
        """
        frame = to_frame(message)
        if self._broadcast is not None:
            await self._broadcast.publish(self.channel_prefix + room, frame)
            return
        found = self._rooms.get(room)
        if found is not None:
            found.fan_out(frame)
        await trio.lowlevel.checkpoint()

    # -- the sender task -----------------------------------------------------

    async def _serve(self, member: Member) -> None:
        websocket = member.websocket
        try:
            with member._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch, websocket, nursery.cancel_scope)
                    await self._send_all(member)
                    nursery.cancel_scope.cancel()
            if member.overflowed and websocket.application_state is WebSocketState.CONNECTED:
                logger.info(
                    "Closing %r with 1013: more than %d frames waiting for it", websocket, member.max_backlog
                )
                with trio.move_on_after(self.close_timeout):
                    await websocket.close(
                        TRY_AGAIN_LATER, f"too slow: more than {member.max_backlog} undelivered messages"
                    )
        finally:
            self._prune(member)

    @staticmethod
    async def _watch(websocket: WebSocket, sender: trio.CancelScope) -> None:
        # A member that is sent nothing would otherwise never notice its peer left.
        await websocket.wait_disconnected()
        sender.cancel()

    @staticmethod
    async def _send_all(member: Member) -> None:
        websocket, outbox = member.websocket, member._outbox
        # Not send_text/send_bytes: frames are str or bytes already.
        send, eager = member._send, member._eager

        def overflow() -> SubscriberOverflow:
            return SubscriberOverflow(f"member {websocket!r}", outbox.max_backlog)

        while True:
            if len(outbox):
                # The previous send has yielded already; take the next frame without
                # another scheduling round, and park only when the outbox is empty.
                frame = outbox.get_nowait()
                eager_now = False
            else:
                try:
                    frame = await outbox.get(overflow)
                except (trio.EndOfChannel, SubscriberOverflow):
                    return
                eager_now = eager
            if websocket.application_state is not WebSocketState.CONNECTED:
                return  # the handler closed it; nothing more can be sent
            # Woken for this frame, the task has been through the scheduler already:
            # a frame the socket takes at once needs no second trip (write_now).
            if eager_now and write_now(websocket, frame):
                continue
            try:
                await send(frame)
            except WebSocketDisconnect:
                return

    def __repr__(self) -> str:
        via = f" via {self._broadcast!r}" if self._broadcast is not None else ""
        return f"<ConnectionHub rooms={len(self._rooms)} members={len(self._members)}{via}>"


#: The name FastAPI tutorials use for this pattern.
ConnectionManager = ConnectionHub
