"""The native transport's I/O: sockets, the write hand-off, the supervisor.

The protocol itself (frames, permessage-deflate, the close handshake) is
``trioapi.protocol``, which does no I/O; this module moves its bytes. The
accept loop and the HTTP handshake are ``trioapi.server._native``.

A handler waiting in ``receive_*`` reads its socket itself: the bytes go
through the frame reader and the message is returned from the same task,
without a reader task or a channel between socket and handler
(trio-websocket's design, which costs two task switches per message). Pings
and closes that arrive meanwhile are answered on the spot.

A handler that is *not* receiving (it only sends, or waits on something else)
still has its pings answered and its peer's close seen: the app's connection
registry starts a stand-in reader for it, on this transport as on every other
(``trioapi.websockets.read_for_idle_handler``), which calls ``receive`` for it
and steps aside, cancelling that call, when the handler receives again. The
server's ``Supervisor`` sends keepalive pings, a few connections at a time,
without a task per ping, and drops connections whose close is overdue.

Compared with the ASGI path there is no per-message dict and no server queue,
and the client's real close code reaches the app (hypercorn always reports
1006). Invalid UTF-8 is answered with close 1007 and other protocol errors with
1002, as RFC 6455 asks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Final, TypeAlias, cast

import attrs
import trio
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.handshake import H11Handshake

from trioapi.protocol import (
    PING,
    PONG,
    CloseEvent,
    CloseHandshake,
    ConnectionState,
    Deflater,
    FrameReader,
    ProtocolError,
    close_frame,
    frame,
    message_frame,
    negotiate,
)
from trioapi.transports import PeerClosed

if TYPE_CHECKING:
    pass

__all__ = [
    "NOT_NOW",
    "Address",
    "NativeConfig",
    "NativeTransport",
    "Supervisor",
    "WriteTurn",
    "close_socket",
    "recv",
    "send_plain",
    "tls_handshake",
]

logger = logging.getLogger("trioapi.native")

#: A socket address as the scope carries it: (host, port).
Address: TypeAlias = tuple[str, int]

#: Set on every accepted socket, as ``trio.SocketStream`` would: no Nagle delay for
#: small frames, and writability reported only once little is left unsent.
STREAM_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
if hasattr(socket, "TCP_NOTSENT_LOWAT"):
    STREAM_OPTIONS.append((socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 2**14))

#: Seconds the peer gets to answer our close frame before its socket is closed.
CLOSE_HANDSHAKE_TIMEOUT = 2.0

#: Default seconds a keepalive ping may wait for its pong.
DEFAULT_PING_TIMEOUT = 20.0

#: How often the supervisor looks at each connection, in seconds: for handlers that
#: stopped receiving, overdue close handshakes, and pings that are due or unanswered.
#: A ping or close from the peer of a busy handler is answered within two of these.
IDLE_CHECK_INTERVAL = 0.5

#: The most connections the supervisor looks at in one go (about a millisecond's work),
#: and the most pings it means to write in one go (their pongs wake as many handlers
#: at once). A round over many connections, or with many pings due, is spread over
#: as many ticks as these take, so that no round holds up the event loop (and every
#: other connection's messages) for more than a moment; a round that needs neither
#: is one tick, as few wake-ups as possible.
LOOKS_PER_TICK = 1024
PINGS_PER_TICK = 64

_OPEN: Final = ConnectionState.OPEN
_PING: Final = frame(PING, b"")

# What a write is, for the close handshake.
_DATA: Final = 0
_CONTROL: Final = 1  # ping, pong: not sent once a close is under way
_GOODBYE: Final = 2  # a close frame: sent once, opening the handshake or answering the peer's
_FAILURE: Final = 3  # the close frame for a protocol error: its transition (FAIL) is made already
_HANDSHAKE: Final = 4  # the 101 or a refusal, before there is a state


@attrs.frozen
class NativeConfig:
    """Limits of the native transport. Every default is documented in ``docs/guides/deployment.md``."""

    #: Close 1009 when a message is longer than this (characters for text).
    max_message_size: int = 1024 * 1024
    #: Drop a client that has not finished its handshake after this long.
    handshake_timeout: float = 10.0
    #: Seconds between keepalive pings; ``None`` turns keepalive off.
    ping_interval: float | None = 20.0
    #: A peer that does not answer a ping within this long is dropped (dead-peer detection).
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    #: Bytes per socket read.
    receive_buffer_size: int = 64 * 1024
    #: Agree to permessage-deflate (RFC 7692) when a client offers it.
    compression: bool = True


class WriteTurn:
    """Whose turn it is to write a connection's socket: first come, first served.

    A frame is never interleaved with another, and frames go out in the order
    their writers came (which permessage-deflate's context takeover needs). Not
    a ``trio.Lock``: a frame ``write_now`` could only start is finished by a
    supervisor task, which hands on a turn another task took, and taking a free
    turn costs no checkpoint.
    """

    __slots__ = ("_queue", "busy")

    def __init__(self) -> None:
        #: Someone is writing, or a frame is partly written.
        self.busy = False
        self._queue: trio.lowlevel.ParkingLot | None = None  # made on first need

    def take_now(self) -> bool:
        """Take the turn if it is free."""
        if self.busy:
            return False
        self.busy = True
        return True

    async def wait(self) -> None:
        """Wait until the writer before us hands the turn over (call when ``take_now`` failed)."""
        if self._queue is None:
            self._queue = trio.lowlevel.ParkingLot()
        await self._queue.park()

    def hand_on(self) -> None:
        """Give the turn to the next writer in line, or free it."""
        queue = self._queue
        if queue:
            queue.unpark()
        else:
            self.busy = False


class NativeTransport:
    """A ``WebSocketTransport`` over one TCP socket (wsproto for the handshake, ``trioapi.protocol`` after).

    The socket has at most one reader: whoever is inside ``receive`` (the
    handler, or the stand-in reader that reads for it while it is away: the
    ``WebSocket`` lets only one of them in at a time), or, at the end, the
    connection's own task finishing the close handshake. Writers take turns
    (``WriteTurn``), so a frame is never interleaved with another and never
    follows our close frame.
    """

    __slots__ = (
        "_buffer_size",
        "_closing",
        "_config",
        "_deflater",
        "_frames",
        "_handshake",
        "_inbox",
        "_next_ping",
        "_ping_since",
        "_raw",
        "_request",
        "_supervisor",
        "_trailing",
        "_turn",
        "can_deny",
    )

    writes_now = True

    def __init__(
        self,
        raw: socket.socket,
        handshake: H11Handshake,
        request: Request,
        trailing: bytes,
        config: NativeConfig,
    ) -> None:
        # The plain socket (or a TLS one, ssl.SSLSocket), non-blocking (handle_native_stream
        # made it so): read and written directly, with trio.lowlevel's waits when it is not ready.
        self._raw = raw
        # Until accept (or a refusal); after it, frames are trioapi.protocol's.
        self._handshake: H11Handshake | None = handshake
        self._request = request
        self._trailing = trailing
        self._config = config
        self._buffer_size = config.receive_buffer_size
        self._frames = FrameReader(config.max_message_size)
        self._closing = CloseHandshake()
        self._turn = WriteTurn()
        # permessage-deflate's compressor, when the handshake agreed it.
        self._deflater: Deflater | None = None
        self._inbox: deque[str | bytes] = deque()
        # Keepalive (the supervisor's): when the next ping is due (0: from the first
        # look), and since when one has waited for its pong.
        self._next_ping = 0.0
        self._ping_since: float | None = None
        # Set by Supervisor.watch: finishes a frame write_now could only start.
        self._supervisor: Supervisor | None = None
        self.can_deny = True

    # -- the handshake ---------------------------------------------------------

    async def connect(self) -> None:
        """The client's request was read before this transport was made: nothing to wait for."""
        await trio.lowlevel.checkpoint()

    async def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the 101 response, agreeing to permessage-deflate if the client offers it and it is on."""
        assert self._handshake is not None
        offers = self._request.extensions  # a server's wsproto gives the header's elements, as str
        if offers and self._config.compression:
            agreed = negotiate(offers)  # type: ignore[arg-type]
            if agreed is not None:
                headers = [(b"sec-websocket-extensions", agreed.response.encode()), *headers]
                self._frames = FrameReader(self._config.max_message_size, agreed.inflater())
                self._deflater = agreed.deflater()
        response = self._handshake.send(AcceptConnection(subprotocol=subprotocol, extra_headers=headers))
        self._handshake = None  # its h11 state is no longer needed: every open connection would keep it
        self._closing.transition(CloseEvent.ACCEPT)
        trailing, self._trailing = self._trailing, b""
        await self._write(response, _HANDSHAKE)
        if trailing:  # frames the client sent without waiting for the 101
            replies = self._absorb(trailing)
            if replies:
                await self._send_control(replies)

    async def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Refuse the handshake with an HTTP response."""
        assert self._handshake is not None
        headers = [(name, value) for name, value in headers if name.lower() != b"content-length"]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
            data = self._handshake.send(RejectConnection(status_code=status, headers=headers, has_body=True))
            data += self._handshake.send(RejectData(data=body))
        else:
            data = self._handshake.send(RejectConnection(status_code=status, headers=headers))
        await self._refuse(data)

    async def _refuse(self, response: bytes) -> None:
        """Send an HTTP refusal instead of the 101, unless the client has gone already."""
        closing = self._closing
        if closing.state is not ConnectionState.CONNECTING:
            raise PeerClosed(*(closing.reason or (1006, "")))
        closing.transition(CloseEvent.REJECT)
        await self._write(response, _HANDSHAKE)

    # -- receiving -------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message, read from the socket in this task unless one is waiting."""
        inbox = self._inbox
        if inbox:
            await trio.lowlevel.checkpoint()
            return inbox.popleft()
        while not inbox:
            reason = self._closing.reason
            if reason is not None:
                raise PeerClosed(*reason)
            data = await recv(self._raw, self._buffer_size)
            replies = self._absorb(data)
            if replies:
                await self._send_control(replies)
        return inbox.popleft()

    def _absorb(self, data: bytes) -> list[tuple[bytes, int]] | None:
        """Parse ``data`` (``b""`` at end of stream): keep messages, return the frames to answer with.

        Synchronous: nothing here can be cancelled half-way, so nothing read is lost.
        """
        if not data:
            self._closing.transition(CloseEvent.LOSE, (1006, ""))
            return None
        try:
            controls = self._frames.feed(data, self._inbox)
        except ProtocolError as error:
            return self._fail(error.code, error.reason)
        if controls is None:
            return None
        closing = self._closing
        replies: list[tuple[bytes, int]] = []
        for opcode, payload in controls:
            if opcode == PING:
                if closing.state is _OPEN:
                    replies.append((frame(PONG, payload), _CONTROL))  # type: ignore[arg-type]
            elif opcode == PONG:
                self._ping_since = None  # any pong answers our ping: they come in order
            else:  # CLOSE, always the last
                code, reason = cast("tuple[int, str]", payload)
                state = closing.transition(CloseEvent.RECEIVE_CLOSE, (code, reason))
                if state is ConnectionState.REMOTE_CLOSING:  # the peer says goodbye: say it back
                    replies.append((close_frame(code, reason), _GOODBYE))
        return replies or None

    def _fail(self, code: int, reason: str) -> list[tuple[bytes, int]] | None:
        """End the conversation for a limit or a protocol error: ``code`` to the peer and the handler."""
        closing = self._closing
        was_open = closing.state is _OPEN
        closing.transition(CloseEvent.FAIL, (code, reason), trio.current_time())
        return [(close_frame(code, reason), _FAILURE)] if was_open else None

    async def _send_control(self, replies: list[tuple[bytes, int]]) -> None:
        """Send pongs and close frames; a cancellation while waiting for our turn loses only a pong."""
        for data, kind in replies:
            try:
                await self._write(data, kind, shielded=True)
            except PeerClosed:
                return

    # -- sending ---------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        """Send one message as a text or binary frame (compressed if agreed)."""
        turn = self._turn
        if not turn.take_now():
            await turn.wait()
        try:
            closing = self._closing
            if closing.state is not _OPEN:
                raise PeerClosed(*(closing.reason or (1006, "")))
            await trio.lowlevel.checkpoint_if_cancelled()
            # Built in turn, after the last cancellation point before the socket:
            # compressed frames go out in the order they were compressed.
            deflater = self._deflater
            try:
                await self._send_all(message_frame(message, deflater))
            except BaseException:
                if deflater is not None:
                    deflater.reset()  # the client will not see this frame: refer to none of it
                raise
        finally:
            turn.hand_on()

    def write_now(self, message: str | bytes) -> bool:
        """Write ``message`` at once, from any task, if the connection is open and nobody is writing.

        For a fan-out to many waiting connections from one task (``ConnectionHub``):
        no task switch per connection. ``False``, with nothing written, if it
        cannot be done now (the caller queues the message instead). A frame the
        kernel takes only part of (or, compressed, none of) is finished by a
        task of the supervisor, which holds the turn meanwhile, so nothing comes
        between its parts.
        """
        turn = self._turn
        supervisor = self._supervisor
        if turn.busy or self._closing.state is not _OPEN or supervisor is None:
            return False
        deflater = self._deflater
        data = message_frame(message, deflater)
        try:
            sent = self._raw.send(data)
        except NOT_NOW:
            if deflater is None:
                return False
            sent = 0  # compressed: it cannot be dropped, its peer's decompressor would miss it
        except OSError:
            self._closing.transition(CloseEvent.LOSE, (1006, ""))
            return False
        if sent < len(data):
            turn.busy = True
            supervisor.finish_write(self, data, sent)
        return True

    async def finish_write(self, data: bytes, sent: int) -> None:
        """Write the rest of a frame ``write_now`` started, then hand the turn on."""
        try:
            await self._send_all(data, sent)
        except PeerClosed:
            pass
        except BaseException:
            if self._deflater is not None:
                self._deflater.reset()  # the client will not see this frame: refer to none of it
            raise
        finally:
            self._turn.hand_on()

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame (before accept: refuse with 403, as hypercorn does)."""
        if self._handshake is not None:
            await self._refuse(self._handshake.send(RejectConnection(status_code=403)))
            return
        await self._write(close_frame(code, reason), _GOODBYE)

    def keep_alive(self, now: float, interval: float, timeout: float) -> bool:
        """Ping the peer if a ping is due, without waiting; ``False`` once one went unanswered too long.

        Any pong answers (they come in order). The ping is written at once when
        nobody else is writing; else a task of the supervisor writes it in turn.
        """
        if self._closing.state is not _OPEN:
            return True
        since = self._ping_since
        if since is not None:
            return now - since <= timeout
        if now < self._next_ping:
            return True
        if not self._next_ping:  # the first look: the first ping is due an interval from now
            self._next_ping = now + interval
            return True
        self._ping_since = now
        self._next_ping = now + interval
        supervisor = self._supervisor
        assert supervisor is not None
        turn = self._turn
        if turn.busy:
            supervisor.write_in_turn(self, _PING)
            return True
        try:
            sent = self._raw.send(_PING)
        except NOT_NOW:
            sent = 0
        except OSError:
            self._closing.transition(CloseEvent.LOSE, (1006, ""))
            return True  # the reader or the next writer finds the connection gone
        if sent < len(_PING):  # the socket is full: wait for it in turn
            turn.busy = True
            supervisor.finish_write(self, _PING, sent)
        return True

    async def write_control(self, data: bytes) -> None:
        """Write a ping or pong in turn (not once a close is under way)."""
        await self._write(data, _CONTROL)

    async def _write(self, data: bytes, kind: int = _DATA, *, shielded: bool = False) -> None:
        """Write a frame in turn, keeping the close handshake's state.

        A data frame after a close raises ``PeerClosed``; a ping or pong then is
        not sent; a close frame is sent once; handshake bytes go out as they
        are. A ``shielded`` write (a reader's pong or close answer: it must not
        be cancelled half-way) has ``CLOSE_HANDSHAKE_TIMEOUT``: a peer that
        reads nothing for that long is dropped.
        """
        turn = self._turn
        if not turn.take_now():
            await turn.wait()
        try:
            closing = self._closing
            state = closing.state
            if kind == _GOODBYE:
                if state is _OPEN:  # the peer's answer is due from now
                    closing.transition(CloseEvent.SEND_CLOSE, now=trio.current_time())
                elif state is ConnectionState.REMOTE_CLOSING:
                    closing.transition(CloseEvent.SEND_CLOSE)
                else:
                    return  # our close frame is out already, or the connection is gone
            elif kind == _FAILURE:
                if state is not ConnectionState.LOCAL_CLOSING:
                    return  # gone since
            elif kind != _HANDSHAKE and state is not _OPEN:
                if kind == _DATA:
                    raise PeerClosed(*(closing.reason or (1006, "")))
                return
            await trio.lowlevel.checkpoint_if_cancelled()
            if shielded:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + CLOSE_HANDSHAKE_TIMEOUT
                    await self._send_all(data)
                if scope.cancelled_caught:
                    self.abort()
            else:
                await self._send_all(data)
        finally:
            turn.hand_on()

    async def _send_all(self, data: bytes, sent: int = 0) -> None:
        """Write ``data[sent:]``; a cancellation after part of a frame went out breaks the connection.

        The caller has passed a cancellation point already; a cancel-shielded one
        follows, as every Trio send has (and as ``trio.SocketStream`` would do,
        without its layers per call).
        """
        raw = self._raw
        try:
            want_write = True
            if not sent:
                try:
                    sent = raw.send(data)
                except NOT_NOW as error:
                    want_write = _wants_write(error, writing=True)
                else:
                    if sent == len(data):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        return
            with memoryview(data) as view:
                while sent < len(data):
                    await _ready_for(raw, want_write)
                    try:
                        sent += raw.send(view[sent:])
                    except NOT_NOW as error:
                        want_write = _wants_write(error, writing=True)
        except (OSError, trio.ClosedResourceError):
            self._closing.transition(CloseEvent.LOSE, (1006, ""))
            raise PeerClosed(1006, "") from None
        except BaseException:
            if sent:  # cancelled half-way through a frame: the stream cannot be used again
                self.abort()
            raise

    def abort(self) -> None:
        """Drop the TCP connection (a dead peer, a frame cut short): readers and writers see 1006."""
        self._closing.transition(CloseEvent.LOSE, (1006, ""))
        close_socket(self._raw)  # wakes a reader or writer waiting on it

    # -- the end ---------------------------------------------------------------

    def overdue_close(self, now: float) -> bool:
        """Whether our close frame has waited too long for the peer's answer."""
        return self._closing.overdue(now, CLOSE_HANDSHAKE_TIMEOUT)

    def is_open(self) -> bool:
        """Whether the handshake is done and neither side has ended the conversation."""
        return self._closing.state is _OPEN

    async def finish(self) -> None:
        """After the handler: read until the peer answers our close frame (the caller bounds it)."""
        closing = self._closing
        if closing.state is ConnectionState.REMOTE_CLOSING and closing.reason is not None:
            # The reader was cancelled between the peer's close and our answer.
            with contextlib.suppress(PeerClosed):
                await self._write(close_frame(*closing.reason), _GOODBYE, shielded=True)
        while closing.state is ConnectionState.LOCAL_CLOSING and not self._frames.done:
            data = await recv(self._raw, self._buffer_size)
            if not data:
                return
            self._inbox.clear()
            self._absorb(data)


class Supervisor:
    """One task for every connection of a server: keepalive pings and overdue closes.

    It looks at each connection every ``IDLE_CHECK_INTERVAL``: it closes a socket
    whose close handshake is overdue, and every ``ping_interval`` writes a
    ping; a peer that has not answered within ``ping_timeout`` has its TCP
    connection dropped, so its handler sees ``WebSocketDisconnect(1006)`` as for
    any broken connection.

    A round is spread over ticks of at most ``LOOKS_PER_TICK`` connections and
    about ``PINGS_PER_TICK`` pings, and a ping is written on the spot (no task
    per ping, its pong checked at a later look), so 10,000 connections cost
    many short ticks rather than one long stall. One task for the server rather
    than one per connection keeps idle connections small.
    """

    def __init__(self, config: NativeConfig) -> None:
        self._config = config
        self._transports: set[NativeTransport] = set()
        self._tasks: trio.Nursery | None = None

    def watch(self, transport: NativeTransport) -> None:
        """Look after ``transport`` until ``forget``."""
        self._transports.add(transport)
        transport._supervisor = self

    def finish_write(self, transport: NativeTransport, data: bytes, sent: int) -> None:
        """Write the rest of ``data`` to ``transport`` in a task of ours (see ``write_now``)."""
        if self._tasks is None:  # not running: nothing should be served
            transport.abort()
            transport._turn.hand_on()
            return
        self._tasks.start_soon(_guarded, partial(transport.finish_write, data, sent), transport)

    def write_in_turn(self, transport: NativeTransport, data: bytes) -> None:
        """Write the control frame ``data`` to ``transport`` in a task of ours, once its turn comes."""
        if self._tasks is not None:
            self._tasks.start_soon(_guarded, partial(transport.write_control, data), transport)

    def forget(self, transport: NativeTransport) -> None:
        """Stop looking after ``transport``: its handler has finished."""
        self._transports.discard(transport)
        transport._supervisor = None

    async def run(self) -> None:
        """Look after every watched connection; runs until cancelled."""
        interval = self._config.ping_interval
        # Pings due per connection and round: each is pinged once every interval.
        ping_share = IDLE_CHECK_INTERVAL / interval if interval is not None else 0.0
        async with trio.open_nursery() as tasks:
            self._tasks = tasks
            while True:
                connections = list(self._transports)  # this round's; newcomers wait for the next
                count = len(connections)
                ticks = max(1, -(-count // LOOKS_PER_TICK), math.ceil(count * ping_share / PINGS_PER_TICK))
                for tick in range(ticks):
                    await trio.sleep(IDLE_CHECK_INTERVAL / ticks)
                    now = trio.current_time()
                    for transport in connections[tick::ticks]:
                        if transport._supervisor is self:  # not forgotten meanwhile
                            self._look_after(transport, now, tasks)

    def _look_after(self, transport: NativeTransport, now: float, tasks: trio.Nursery) -> None:
        if transport.overdue_close(now):
            transport.abort()
            return
        config = self._config
        if config.ping_interval is not None and not transport.keep_alive(
            now, config.ping_interval, config.ping_timeout
        ):
            logger.info("WebSocket peer did not answer a ping within %ss; dropping it", config.ping_timeout)
            transport.abort()


async def _guarded(fn: Callable[[], Awaitable[None]], transport: NativeTransport) -> None:
    """Run one connection's chore in the supervisor's nursery: a bug drops that connection, not the server."""
    try:
        await fn()
    except Exception:
        logger.exception("Unexpected error while looking after a connection; dropping it")
        transport.abort()


#: What a non-blocking socket raises when it cannot go on now: a plain one
#: ``BlockingIOError``; a TLS one (``ssl.SSLSocket``, ``--certfile``) the want-read
#: or want-write errors, since TLS may need to read in order to write, or the reverse.
NOT_NOW = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _wants_write(error: OSError, *, writing: bool) -> bool:
    """Whether a socket that ``error`` (one of ``NOT_NOW``) stopped must become writable to go on.

    A plain socket waits for what it was doing; TLS says what it wants. Callers
    keep this answer rather than the exception across their wait: an idle
    connection would otherwise hold the exception, its traceback and a reference
    cycle through its own frame for as long as it waits.
    """
    if isinstance(error, BlockingIOError):
        return writing
    return isinstance(error, ssl.SSLWantWriteError)


async def _ready_for(raw: socket.socket, want_write: bool) -> None:
    """Wait until ``raw`` is writable (``want_write``) or readable."""
    if want_write:
        await trio.lowlevel.wait_writable(raw)
    else:
        await trio.lowlevel.wait_readable(raw)


async def tls_handshake(raw: ssl.SSLSocket) -> None:
    """The server side of a TLS handshake on a non-blocking socket (the caller bounds it in time)."""
    while True:
        try:
            raw.do_handshake()
            return
        except NOT_NOW as error:
            want_write = _wants_write(error, writing=False)
        await _ready_for(raw, want_write)


def close_socket(raw: socket.socket) -> None:
    """Close a plain socket (once): wake whoever waits on it first, as Trio asks."""
    if raw.fileno() != -1:
        trio.lowlevel.notify_closing(raw)
        raw.close()


async def recv(raw: socket.socket, size: int) -> bytes:
    """The next bytes (up to ``size``) from a plain non-blocking socket, ``b""`` once it has ended or broken.

    As ``trio.SocketStream.receive_some`` does, without its layers per call:
    try at once (a busy server usually finds the next message there already;
    waiting for readiness first measured slower), and wait only if nothing
    is there. Once bytes are read nothing can cancel their return, so
    nothing read is lost. A module function, called directly by each reader
    (the handshake, the handler, the stand-in, the close, the linger): every
    idle connection keeps the frames of its await chain.
    """
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            data = raw.recv(size)
        except NOT_NOW as error:
            want_write = _wants_write(error, writing=False)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while True:
            await _ready_for(raw, want_write)
            try:
                return raw.recv(size)
            except NOT_NOW as error:  # woken for nothing after all
                want_write = _wants_write(error, writing=False)
    except (OSError, trio.ClosedResourceError):
        return b""


async def send_plain(raw: socket.socket, data: bytes) -> None:
    """Write all of ``data`` (an answer to a request that is not a WebSocket handshake)."""
    await trio.lowlevel.checkpoint_if_cancelled()
    sent = 0
    want_write = True
    with memoryview(data) as view:
        while True:
            try:
                sent += raw.send(view[sent:])
            except NOT_NOW as error:
                want_write = _wants_write(error, writing=True)
            if sent == len(data):
                break
            await _ready_for(raw, want_write)
    await trio.lowlevel.cancel_shielded_checkpoint()
