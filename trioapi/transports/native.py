"""The native transport: trioapi's own accept loop, frames read in the handler's task.

A handler waiting in ``receive_*`` reads its socket itself: the bytes go
through the frame parser (``_frames``; wsproto does the HTTP handshake) and the
message is returned from the same task, without a reader task or a channel
between socket and handler (trio-websocket's design, which costs two task
switches per message). Pings and closes that arrive meanwhile are answered on
the spot.

A handler that is *not* receiving (it only sends, or waits on something else)
still has its pings answered and its peer's close seen: the server's
``Supervisor`` notices a connection whose handler has not asked for a message
for a while and starts a reader for it, which holds at most
``NativeConfig.message_queue_size`` messages for the handler and steps aside
as soon as the handler receives again. The same task sends keepalive pings.

Compared with the ASGI path there is no per-message dict and no server queue,
and the client's real close code reaches the app (hypercorn always reports
1006). Invalid UTF-8 is answered with close 1007 and other protocol errors with
1002, as RFC 6455 asks.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast
from urllib.parse import unquote

import attrs
import trio
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.handshake import H11Handshake

from trioapi.transports import PeerClosed
from trioapi.transports._frames import (
    BINARY,
    PING,
    PONG,
    TEXT,
    FrameReader,
    ProtocolError,
    close_frame,
    frame,
)

if TYPE_CHECKING:
    from trioapi._types import Scope

__all__ = [
    "Address",
    "NativeConfig",
    "NativeTransport",
    "Supervisor",
    "close_socket",
    "header_lines",
    "recv",
    "send_plain",
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

#: How often the supervisor looks for handlers that stopped receiving, in seconds.
#: A ping or close from the peer of such a handler is answered within two of these.
IDLE_CHECK_INTERVAL = 0.5

# The close handshake, as RFC 6455 names its states (before accept there is no state).
_OPEN: Final = 1
_LOCAL_CLOSING: Final = 2  # our close frame is out; the peer's answer is due
_REMOTE_CLOSING: Final = 3  # the peer's close frame came; our answer is due
_CLOSED: Final = 4

# What a write is, for the close handshake.
_DATA: Final = 0
_CONTROL: Final = 1  # ping, pong: not sent once a close is under way
_GOODBYE: Final = 2  # a close frame
_HANDSHAKE: Final = 3  # the 101 or a refusal, before there is a state


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
    #: Messages read for a handler that is busy elsewhere, before reading pauses.
    message_queue_size: int = 4


def _message_frame(message: str | bytes) -> bytes:
    """The frame for one message: text for ``str``, binary for ``bytes``."""
    if type(message) is str:
        return frame(TEXT, message.encode())
    return frame(BINARY, message)  # type: ignore[arg-type]


def header_lines(head: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(name, value)`` lines of an HTTP request head, names lowercased, both stripped."""
    headers = []
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((name.strip().lower(), value.strip()))
    return headers


#: Who is reading a connection's socket.
_HANDLER: Final = 1
_STAND_IN: Final = 2


class NativeTransport:
    """A ``WebSocketTransport`` over one TCP socket (wsproto for the handshake, ``_frames`` after).

    The socket has at most one reader: the handler inside ``receive`` (the
    usual case), or the stand-in reader the ``Supervisor`` starts while the
    handler is away, or, at the end, the connection's own task finishing the
    close handshake. Writers take turns through a small FIFO hand-off, so a
    frame is never interleaved with another and never follows our close frame.
    """

    __slots__ = (
        "_broken",
        "_buffer_size",
        "_closing_since",
        "_corrupt",
        "_gone",
        "_handshake",
        "_head",
        "_inbox",
        "_pong",
        "_queue_size",
        "_raw",
        "_reader",
        "_reader_frames",
        "_receives",
        "_request",
        "_seen_receives",
        "_stand_in_scope",
        "_state",
        "_supervisor",
        "_trailing",
        "_waiter",
        "_write_lot",
        "_writing",
        "can_deny",
    )

    writes_now = True

    def __init__(
        self,
        raw: socket.socket,
        handshake: H11Handshake,
        request: Request,
        head: bytes,
        trailing: bytes,
        config: NativeConfig,
    ) -> None:
        # The plain socket, non-blocking (handle_native_stream made it so): read and written
        # directly, with trio.lowlevel's waits when it is not ready.
        self._raw = raw
        # Until accept (or a refusal); after it, frames are ours (trioapi.transports._frames).
        self._handshake: H11Handshake | None = handshake
        self._request = request
        self._head = head
        self._trailing = trailing
        self._buffer_size = config.receive_buffer_size
        self._queue_size = config.message_queue_size
        self._state = 0  # _OPEN once accepted
        self._reader_frames = FrameReader(config.max_message_size)
        self._inbox: deque[str | bytes] = deque()
        # Why the conversation is over, as (code, reason), once it is: the
        # peer's close, a broken socket (1006), or a limit we enforced.
        self._gone: tuple[int, str] | None = None
        # A partial frame went out (a send cancelled half-way): nothing more can be sent.
        self._broken = False
        # The client broke the protocol: nothing more can be parsed.
        self._corrupt = False
        self._reader = 0
        self._receives = 0
        self._seen_receives = -1
        self._stand_in_scope: trio.CancelScope | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self._writing = False
        self._write_lot: trio.lowlevel.ParkingLot | None = None
        self._pong: trio.Event | None = None
        self._closing_since: float | None = None
        # Set by handle_native_stream: finishes a frame write_now could only start.
        self._supervisor: Supervisor | None = None
        self.can_deny = True

    # -- the handshake ---------------------------------------------------------

    def scope(
        self, state: dict[str, Any], client: Address | None = None, server: Address | None = None
    ) -> Scope:
        """The ASGI-shaped scope of this connection (every request header, lowercased).

        ``client`` and ``server`` are the peer's and the local (host, port), when the
        caller knows them already; else the socket is asked.
        """
        target = self._request.target
        path, _, query = target.partition("?")
        headers = header_lines(self._head)
        self._head = b""  # the scope has the headers now
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "subprotocols": list(self._request.subprotocols),
            "state": dict(state),
            "extensions": {"websocket.http.response": {}},
        }
        try:
            scope["client"] = client or tuple(self._raw.getpeername()[:2])
            scope["server"] = server or tuple(self._raw.getsockname()[:2])
        except OSError:  # the peer has already gone; the handler will find out
            pass
        return scope

    async def connect(self) -> None:
        """The client's request was read before this transport was made: nothing to wait for."""
        await trio.lowlevel.checkpoint()

    async def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the 101 response."""
        assert self._handshake is not None
        response = self._handshake.send(AcceptConnection(subprotocol=subprotocol, extra_headers=headers))
        self._handshake = None  # its h11 state is no longer needed: every open connection would keep it
        self._state = _OPEN
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
        await self._write(data, _HANDSHAKE)

    # -- receiving -------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message, read from the socket in this task unless one is waiting."""
        self._receives += 1
        inbox = self._inbox
        if inbox:
            await trio.lowlevel.checkpoint()
            return inbox.popleft()
        while not inbox:
            if self._gone is not None:
                raise PeerClosed(*self._gone)
            if self._reader:
                await self._take_over_from_stand_in()
                continue
            self._reader = _HANDLER
            try:
                data = await recv(self._raw, self._buffer_size)
            finally:
                self._reader = 0
            replies = self._absorb(data)
            if replies:
                await self._send_control(replies)
        return inbox.popleft()

    def _absorb(self, data: bytes) -> list[tuple[bytes, int]] | None:
        """Parse ``data`` (``b""`` at end of stream): keep messages, return the frames to answer with.

        Synchronous: nothing here can be cancelled half-way, so nothing read is lost.
        """
        if not data:
            self._set_gone(1006, "")
            self._state = _CLOSED
            return None
        try:
            controls = self._reader_frames.feed(data, self._inbox)
        except ProtocolError as error:
            self._corrupt = True  # the rest of the stream cannot be parsed
            return self._fail(error.code, error.reason)
        if controls is None:
            return None
        replies: list[tuple[bytes, int]] = []
        for opcode, payload in controls:
            if opcode == PING:
                if self._state == _OPEN:
                    replies.append((frame(PONG, payload), _CONTROL))  # type: ignore[arg-type]
            elif opcode == PONG:
                if self._pong is not None:
                    self._pong.set()
                    self._pong = None
            else:  # CLOSE, always the last
                code, reason = cast("tuple[int, str]", payload)
                self._set_gone(code, reason)
                if self._state == _OPEN:  # the peer says goodbye: say it back
                    self._state = _REMOTE_CLOSING
                    replies.append((close_frame(code, reason), _GOODBYE))
                else:  # the peer's answer to our close
                    self._state = _CLOSED
        return replies or None

    def _set_gone(self, code: int, reason: str) -> None:
        if self._gone is None:
            self._gone = (code, reason)

    def _fail(self, code: int, reason: str) -> list[tuple[bytes, int]] | None:
        """End the conversation for a limit or a protocol error: ``code`` to the peer and the handler."""
        self._set_gone(code, reason)
        if self._state == _OPEN:
            return [(close_frame(code, reason), _GOODBYE)]
        return None

    async def _send_control(self, replies: list[tuple[bytes, int]]) -> None:
        """Send pongs and close frames; a cancellation while waiting for our turn loses only a pong."""
        for data, kind in replies:
            try:
                await self._write(data, kind, shielded=True)
            except PeerClosed:
                return

    async def _take_over_from_stand_in(self) -> None:
        """Stop the stand-in reader and wait until it has let go of the socket."""
        if self._stand_in_scope is not None:
            self._stand_in_scope.cancel()
        task = self._waiter = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            if self._waiter is task:
                self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wants_stand_in(self) -> bool:
        """Whether the handler has not received since the last look, and nobody reads for it."""
        receives = self._receives
        idle = receives == self._seen_receives
        self._seen_receives = receives
        return idle and not self._reader and self.is_open() and len(self._inbox) < self._queue_size

    async def read_for_idle_handler(self) -> None:
        """Read while the handler is away: answer pings and closes, hold a few messages for it."""
        if self._reader or self._gone is not None:
            return
        self._reader = _STAND_IN
        try:
            while self._waiter is None and self._gone is None and len(self._inbox) < self._queue_size:
                with trio.CancelScope() as scope:
                    self._stand_in_scope = scope
                    data = await recv(self._raw, self._buffer_size)
                self._stand_in_scope = None
                if scope.cancelled_caught:
                    break  # the handler is back
                replies = self._absorb(data)
                if replies:
                    await self._send_control(replies)
        finally:
            self._stand_in_scope = None
            self._reader = 0
            if self._waiter is not None:
                trio.lowlevel.reschedule(self._waiter)
                self._waiter = None

    # -- sending ---------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        """Send one message as a text or binary frame."""
        await self._write(_message_frame(message))

    def write_now(self, message: str | bytes) -> bool:
        """Write ``message`` at once, from any task, if the connection is open and nobody is writing.

        For a fan-out to many waiting connections from one task (``ConnectionHub``):
        no task switch per connection. ``False``, with nothing written, if it
        cannot be done now (the caller queues the message instead). A frame the
        kernel takes only part of is finished by a task of the supervisor, which
        holds the turn meanwhile, so nothing comes between its parts.
        """
        supervisor = self._supervisor
        if self._writing or self._broken or self._state != _OPEN or supervisor is None:
            return False
        data = _message_frame(message)
        try:
            sent = self._raw.send(data)
        except BlockingIOError:
            return False
        except OSError:
            self._set_gone(1006, "")
            return False
        if sent < len(data):
            self._writing = True
            supervisor.finish_write(self, data, sent)
        return True

    async def finish_write(self, data: bytes, sent: int) -> None:
        """Write the rest of a frame ``write_now`` started, then hand the turn on."""
        try:
            await self._send_all(data, sent)
        except PeerClosed:
            pass
        finally:
            self._next_turn()

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame (before accept: refuse with 403, as hypercorn does)."""
        if not self._state:
            assert self._handshake is not None
            await self._write(self._handshake.send(RejectConnection(status_code=403)), _HANDSHAKE)
            return
        await self._write(close_frame(code, reason), _GOODBYE)

    async def ping(self) -> None:
        """Send a ping and wait for the pong (any pong: they answer in order)."""
        pong = self._pong
        if pong is None:
            pong = self._pong = trio.Event()
            await self._write(frame(PING, b""), _CONTROL)
        await pong.wait()

    async def _write(self, data: bytes, kind: int = _DATA, *, shielded: bool = False) -> None:
        """Write a frame in turn, keeping the close handshake's state.

        A data frame after a close raises ``PeerClosed``; a ping or pong then is
        not sent; a close frame is sent once; handshake bytes go out as they
        are. A ``shielded`` write (a reader's pong or close answer: it must not
        be cancelled half-way) has ``CLOSE_HANDSHAKE_TIMEOUT``: a peer that
        reads nothing for that long is dropped.
        """
        if self._writing:
            await self._wait_turn()
        else:
            self._writing = True
        try:
            if self._broken:
                raise PeerClosed(1006, "")
            state = self._state
            if kind == _HANDSHAKE:
                pass
            elif kind == _GOODBYE:
                if state == _OPEN:
                    self._state = _LOCAL_CLOSING
                    self._closing_since = trio.current_time()
                elif state == _REMOTE_CLOSING:
                    self._state = _CLOSED
                else:
                    return  # our close frame is out already
            elif state != _OPEN:
                if kind == _DATA:
                    raise PeerClosed(*(self._gone or (1006, "")))
                return
            if shielded:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + CLOSE_HANDSHAKE_TIMEOUT
                    await self._send_all(data)
                if scope.cancelled_caught:
                    self.abort()
            else:
                await self._send_all(data)
        finally:
            self._next_turn()

    async def _send_all(self, data: bytes, sent: int = 0) -> None:
        """Write ``data[sent:]``; a cancellation after part of a frame went out breaks the connection.

        A checkpoint before, a cancel-shielded one after, as every Trio send has
        (and as ``trio.SocketStream`` would do, without its layers per call).
        """
        raw = self._raw
        try:
            if not sent:
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    sent = raw.send(data)
                except BlockingIOError:
                    pass
                else:
                    if sent == len(data):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        return
            with memoryview(data) as view:
                while sent < len(data):
                    await trio.lowlevel.wait_writable(raw)
                    with contextlib.suppress(BlockingIOError):
                        sent += raw.send(view[sent:])
        except (OSError, trio.ClosedResourceError):
            self._set_gone(1006, "")
            raise PeerClosed(1006, "") from None
        except BaseException:
            if sent:  # cancelled half-way through a frame: the stream cannot be used again
                self.abort()
            raise

    async def _wait_turn(self) -> None:
        if self._write_lot is None:
            self._write_lot = trio.lowlevel.ParkingLot()
        await self._write_lot.park()  # the writer before us hands the turn over

    def _next_turn(self) -> None:
        lot = self._write_lot
        if lot:
            lot.unpark()
        else:
            self._writing = False

    def abort(self) -> None:
        """Drop the TCP connection (a dead peer, a frame cut short): readers and writers see 1006."""
        self._broken = True
        self._set_gone(1006, "")
        close_socket(self._raw)  # wakes a reader or writer waiting on it

    # -- the end ---------------------------------------------------------------

    def overdue_close(self, now: float) -> bool:
        """Whether our close frame has waited too long for the peer's answer."""
        since = self._closing_since
        return since is not None and self._gone is None and now - since > CLOSE_HANDSHAKE_TIMEOUT

    def is_open(self) -> bool:
        """Whether the handshake is done and neither side has ended the conversation."""
        return self._state == _OPEN and self._gone is None

    async def finish(self) -> None:
        """After the handler: read until the peer answers our close frame (the caller bounds it)."""
        while self._reader:
            await self._take_over_from_stand_in()
        if not self._state or self._broken:
            return
        if self._state == _REMOTE_CLOSING and self._gone is not None:
            # The reader was cancelled between the peer's close and our answer.
            with contextlib.suppress(PeerClosed):
                await self._write(close_frame(*self._gone), _GOODBYE, shielded=True)
        while self._state == _LOCAL_CLOSING and not self._corrupt:
            data = await recv(self._raw, self._buffer_size)
            if not data:
                return
            self._inbox.clear()
            self._absorb(data)


class Supervisor:
    """One task for every connection of a server: keepalive pings, and readers for idle handlers.

    Every ``IDLE_CHECK_INTERVAL`` it starts a stand-in reader for each handler
    that has not received since the last look (so pings, pongs and the peer's
    close are still handled), and closes sockets whose close handshake is
    overdue. Every ``ping_interval`` it pings each connection; a peer that has
    not answered within ``ping_timeout`` has its TCP connection dropped, so its
    handler sees ``WebSocketDisconnect(1006)`` as for any broken connection.
    One task for the server rather than one per connection keeps idle
    connections small.
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
            transport._next_turn()
            return
        self._tasks.start_soon(_guarded, partial(transport.finish_write, data, sent), transport)

    def forget(self, transport: NativeTransport) -> None:
        """Stop looking after ``transport``: its handler has finished."""
        self._transports.discard(transport)
        transport._supervisor = None

    async def run(self) -> None:
        """Look after every watched connection; runs until cancelled."""
        interval = self._config.ping_interval
        next_ping = trio.current_time() + interval if interval is not None else None
        async with trio.open_nursery() as tasks:
            self._tasks = tasks
            while True:
                await trio.sleep(IDLE_CHECK_INTERVAL)
                now = trio.current_time()
                ping = next_ping is not None and now >= next_ping
                for transport in list(self._transports):
                    if transport.overdue_close(now):
                        transport.abort()
                    elif transport.wants_stand_in():
                        tasks.start_soon(_guarded, transport.read_for_idle_handler, transport)
                    if ping:
                        tasks.start_soon(_guarded, partial(self._ping, transport), transport)
                if ping and interval is not None:
                    next_ping = now + interval

    async def _ping(self, transport: NativeTransport) -> None:
        if not transport.is_open():
            return
        with trio.move_on_after(self._config.ping_timeout) as timer:
            try:
                await transport.ping()
            except PeerClosed:
                return
        if timer.cancelled_caught and transport.is_open():
            logger.info(
                "WebSocket peer did not answer a ping within %ss; dropping it", self._config.ping_timeout
            )
            transport.abort()


async def _guarded(fn: Callable[[], Awaitable[None]], transport: NativeTransport) -> None:
    """Run one connection's chore in the supervisor's nursery: a bug drops that connection, not the server."""
    try:
        await fn()
    except Exception:
        logger.exception("Unexpected error while looking after a connection; dropping it")
        transport.abort()


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
        except BlockingIOError:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while True:
            await trio.lowlevel.wait_readable(raw)
            try:
                return raw.recv(size)
            except BlockingIOError:  # woken for nothing after all
                pass
    except (OSError, trio.ClosedResourceError):
        return b""


async def send_plain(raw: socket.socket, data: bytes) -> None:
    """Write all of ``data`` (an answer to a request that is not a WebSocket handshake)."""
    await trio.lowlevel.checkpoint_if_cancelled()
    sent = 0
    with memoryview(data) as view:
        while True:
            with contextlib.suppress(BlockingIOError):
                sent += raw.send(view[sent:])
            if sent == len(data):
                break
            await trio.lowlevel.wait_writable(raw)
    await trio.lowlevel.cancel_shielded_checkpoint()
