"""The native transport: trioapi's own accept loop, wsproto driven from the handler's task.

A handler waiting in ``receive_*`` reads its socket itself: the bytes go
through wsproto's frame parser and the message is returned from the same task,
without a reader task or a channel between socket and handler (trio-websocket's
design, which costs two task switches per message). Pings and closes that
arrive meanwhile are answered on the spot.

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
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import attrs
import trio
from wsproto.connection import SERVER, Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from trioapi.transports import PeerClosed
from trioapi.websockets import WebSocket

if TYPE_CHECKING:
    from trioapi._types import Scope
    from trioapi.applications import TrioAPI

__all__ = ["NativeConfig", "NativeTransport", "Supervisor", "handle_native_stream"]

logger = logging.getLogger("trioapi.native")

#: Seconds the peer gets to answer our close frame before its socket is closed.
CLOSE_HANDSHAKE_TIMEOUT = 2.0

#: Seconds a closing connection waits for its peer to read our last frames and hang up.
LINGER = 1.0

#: Default seconds a keepalive ping may wait for its pong.
DEFAULT_PING_TIMEOUT = 20.0

#: Longest HTTP request head accepted before the handshake, in bytes.
MAX_REQUEST_HEAD = 16 * 1024

#: How often the supervisor looks for handlers that stopped receiving, in seconds.
#: A ping or close from the peer of such a handler is answered within two of these.
IDLE_CHECK_INTERVAL = 0.5

_OPEN: Final = ConnectionState.OPEN
_LOCAL_CLOSING: Final = ConnectionState.LOCAL_CLOSING
_REMOTE_CLOSING: Final = ConnectionState.REMOTE_CLOSING
_CLOSED: Final = ConnectionState.CLOSED


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


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (server to client, no extensions)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


#: Who is reading a connection's socket.
_HANDLER: Final = 1
_STAND_IN: Final = 2


class NativeTransport:
    """A ``WebSocketTransport`` over one TCP socket, its frames parsed by wsproto.

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
        "_max_size",
        "_parts",
        "_parts_size",
        "_pong",
        "_queue_size",
        "_raw",
        "_reader",
        "_receives",
        "_request",
        "_seen_receives",
        "_stand_in_scope",
        "_trailing",
        "_waiter",
        "_write_lot",
        "_writing",
        "_ws",
        "can_deny",
    )

    def __init__(
        self,
        raw: socket.socket,
        handshake: H11Handshake,
        request: Request,
        head: bytes,
        trailing: bytes,
        config: NativeConfig,
    ) -> None:
        # The plain socket, non-blocking (trio made it so): read and written
        # directly, with trio.lowlevel's waits when it is not ready.
        self._raw = raw
        # Until accept (or a refusal): then only the wsproto Connection is kept.
        self._handshake: H11Handshake | None = handshake
        self._request = request
        self._head = head
        self._trailing = trailing
        self._buffer_size = config.receive_buffer_size
        self._max_size = config.max_message_size
        self._queue_size = config.message_queue_size
        self._ws: Connection | None = None
        self._inbox: deque[str | bytes] = deque()
        # Fragments of a message that came in several frames or reads.
        self._parts: list[Any] = []
        self._parts_size = 0
        # Why the conversation is over, as (code, reason), once it is: the
        # peer's close, a broken socket (1006), or a limit we enforced.
        self._gone: tuple[int, str] | None = None
        # A partial frame went out (a send cancelled half-way): nothing more can be sent.
        self._broken = False
        # wsproto found a protocol error: nothing more can be parsed.
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
        self.can_deny = True

    # -- the handshake ---------------------------------------------------------

    def scope(self, state: dict[str, Any]) -> Scope:
        """The ASGI-shaped scope of this connection (every request header, lowercased)."""
        target = self._request.target
        path, _, query = target.partition("?")
        headers = []
        for line in self._head.split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if colon:
                headers.append((name.strip().lower(), value.strip()))
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
            scope["client"] = tuple(self._raw.getpeername()[:2])
            scope["server"] = tuple(self._raw.getsockname()[:2])
        except OSError:  # the peer has already gone; the handler will find out
            pass
        return scope

    async def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the 101 response."""
        assert self._handshake is not None
        response = self._handshake.send(AcceptConnection(subprotocol=subprotocol, extra_headers=headers))
        self._ws = self._handshake.connection
        self._handshake = None  # its h11 state is no longer needed: every open connection would keep it
        if self._trailing:  # frames the client sent without waiting for the 101
            self._absorb(self._trailing)
            self._trailing = b""
        await self._write_bytes(response)

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
        """Write a refusal; a client that has already gone needs none."""
        with contextlib.suppress(PeerClosed):
            await self._write_bytes(response)

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
                data = await self._read()
            finally:
                self._reader = 0
            replies = self._absorb(data)
            if replies:
                await self._send_control(replies)
        return inbox.popleft()

    async def _read(self) -> bytes:
        """The next bytes from the socket, ``b""`` once it has ended or broken.

        As ``trio.SocketStream.receive_some`` does, without its layers per call:
        try at once (a busy server usually finds the next message there already;
        waiting for readiness first measured slower), and wait only if nothing
        is there. Once bytes are read nothing can cancel their return, so
        nothing read is lost.
        """
        raw = self._raw
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data = raw.recv(self._buffer_size)
            except BlockingIOError:
                pass
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            while True:
                await trio.lowlevel.wait_readable(raw)
                try:
                    return raw.recv(self._buffer_size)
                except BlockingIOError:  # woken for nothing after all
                    pass
        except (OSError, trio.ClosedResourceError):
            return b""

    def _absorb(self, data: bytes) -> list[Event] | None:
        """Feed ``data`` (``b""`` at end of stream) to wsproto; keep messages, return frames to send back.

        Synchronous: nothing here can be cancelled half-way, so nothing read is lost.
        """
        ws = self._ws
        assert ws is not None
        if not data:
            if self._gone is None:
                self._gone = (1006, "")
            return None
        ws.receive_data(data)
        replies: list[Event] | None = None
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if self._gone is not None:
                    continue  # after a limit we enforced: the rest is discarded
                chunk = event.data  # type: ignore[attr-defined]
                size = self._parts_size + len(chunk)
                if size > self._max_size:
                    self._parts.clear()
                    self._parts_size = 0
                    return self._fail(1009, "message too big")
                if event.message_finished and not self._parts:  # type: ignore[attr-defined]
                    self._inbox.append(chunk)
                    continue
                self._parts.append(chunk)
                self._parts_size = size
                if event.message_finished:  # type: ignore[attr-defined]
                    self._inbox.append(("" if kind is TextMessage else b"").join(self._parts))
                    self._parts.clear()
                    self._parts_size = 0
            elif kind is Ping:
                if ws.state is _OPEN:
                    replies = [*(replies or ()), event.response()]  # type: ignore[attr-defined]
            elif kind is Pong:
                if self._pong is not None:
                    self._pong.set()
                    self._pong = None
            elif kind is CloseConnection:
                close: CloseConnection = event  # type: ignore[assignment]
                state = ws.state
                if state is _REMOTE_CLOSING:  # the peer says goodbye: say it back
                    self._set_gone(int(close.code), close.reason or "")
                    return [*(replies or ()), close.response()]
                if state is _CLOSED:  # the peer's answer to our close
                    self._set_gone(int(close.code), close.reason or "")
                    return replies
                # wsproto found a protocol error (state unchanged): 1007 for
                # invalid UTF-8, 1002 otherwise. The rest of the stream is garbage.
                self._corrupt = True
                return self._fail(int(close.code), "")
        return replies

    def _set_gone(self, code: int, reason: str) -> None:
        if self._gone is None:
            self._gone = (code, reason)

    def _fail(self, code: int, reason: str) -> list[Event] | None:
        """End the conversation for a limit or a protocol error: ``code`` to the peer and the handler."""
        self._set_gone(code, reason)
        assert self._ws is not None
        if self._ws.state is _OPEN:
            self._closing_since = trio.current_time()
            return [CloseConnection(code=code, reason=reason or None)]
        return None

    async def _send_control(self, replies: list[Event]) -> None:
        """Send pongs and close frames; a cancellation while waiting for our turn loses only a pong."""
        for reply in replies:
            try:
                await self._write(reply, control=True)
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
        return (
            idle
            and not self._reader
            and self._ws is not None
            and self._gone is None
            and len(self._inbox) < self._queue_size
        )

    async def read_for_idle_handler(self) -> None:
        """Read while the handler is away: answer pings and closes, hold a few messages for it."""
        if self._reader or self._gone is not None:
            return
        self._reader = _STAND_IN
        try:
            while self._waiter is None and self._gone is None and len(self._inbox) < self._queue_size:
                with trio.CancelScope() as scope:
                    self._stand_in_scope = scope
                    data = await self._read()
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
        if type(message) is str:
            await self._write(_frame(0x1, message.encode()))
        else:
            await self._write(_frame(0x2, message))  # type: ignore[arg-type]

    async def send_eager(self, message: str | bytes) -> None:
        """``send`` for a task that was just woken to send ``message`` (a hub's sender).

        That task has been through a schedule point already, so a frame the
        kernel takes whole goes out without another; only a frame that has to
        wait for the peer yields. ``send`` yields after every frame, as every
        Trio I/O call does.
        """
        if self._writing or self._broken or self._ws is None or self._ws.state is not _OPEN:
            await self.send(message)  # waits its turn, or raises the right PeerClosed
            return
        data = _frame(0x1, message.encode()) if type(message) is str else _frame(0x2, message)  # type: ignore[arg-type]
        self._writing = True
        try:
            try:
                sent = self._raw.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._set_gone(1006, "")
                raise PeerClosed(1006, "") from None
            if sent < len(data):
                await self._send_all(data, sent)
        finally:
            self._next_turn()

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame (before accept: refuse with 403, as hypercorn does)."""
        if self._ws is None:
            assert self._handshake is not None
            await self._refuse(self._handshake.send(RejectConnection(status_code=403)))
            return
        if self._ws.state is _OPEN or self._ws.state is _REMOTE_CLOSING:
            await self._write(CloseConnection(code=code, reason=reason or None))

    async def ping(self) -> None:
        """Send a ping and wait for the pong (any pong: they answer in order)."""
        pong = self._pong
        if pong is None:
            pong = self._pong = trio.Event()
            await self._write(Ping())
        await pong.wait()

    async def _write(self, frame: bytes | Event, *, control: bool = False) -> None:
        """Write a frame: ready bytes, or a wsproto control event turned into bytes in turn.

        A ``control`` frame is written shielded (a reader must not be cancelled
        half-way through a pong) and within ``CLOSE_HANDSHAKE_TIMEOUT``: a peer
        that reads nothing for that long is dropped.
        """
        if self._writing:
            await self._wait_turn()
        else:
            self._writing = True
        try:
            ws = self._ws
            assert ws is not None
            if self._broken:
                raise PeerClosed(1006, "")
            if type(frame) is bytes:
                if ws.state is not _OPEN:
                    raise PeerClosed(*(self._gone or (1006, "")))
                data = frame
            else:
                try:
                    data = ws.send(frame)  # type: ignore[arg-type]
                except LocalProtocolError:
                    raise PeerClosed(*(self._gone or (1006, ""))) from None
                if type(frame) is CloseConnection and self._closing_since is None:
                    self._closing_since = trio.current_time()
            if control:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + CLOSE_HANDSHAKE_TIMEOUT
                    await self._send_all(data)
                if scope.cancelled_caught:
                    self._break()
            else:
                await self._send_all(data)
        finally:
            self._next_turn()

    async def _write_bytes(self, data: bytes) -> None:
        """Write handshake bytes (101 or refusal), in turn with any other writer."""
        if self._writing:
            await self._wait_turn()
        else:
            self._writing = True
        try:
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
                self._break()
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

    def _break(self) -> None:
        """Drop the TCP connection: readers and writers see a broken connection (1006)."""
        self._broken = True
        self._set_gone(1006, "")
        trio.lowlevel.notify_closing(self._raw)  # wakes a reader or writer waiting on it
        self._raw.close()

    # -- the end ---------------------------------------------------------------

    def overdue_close(self, now: float) -> bool:
        """Whether our close frame has waited too long for the peer's answer."""
        since = self._closing_since
        return since is not None and self._gone is None and now - since > CLOSE_HANDSHAKE_TIMEOUT

    def is_open(self) -> bool:
        """Whether the handshake is done and neither side has ended the conversation."""
        return self._ws is not None and self._gone is None

    def abort(self) -> None:
        """Drop the connection now (a dead peer)."""
        self._break()

    async def finish(self) -> None:
        """After the handler: read until the peer answers our close frame (the caller bounds it)."""
        while self._reader:
            await self._take_over_from_stand_in()
        ws = self._ws
        if ws is None or self._broken:
            return
        if ws.state is _REMOTE_CLOSING and self._gone is not None:
            # The reader was cancelled between the peer's close and our answer.
            with contextlib.suppress(PeerClosed):
                await self._write(CloseConnection(code=self._gone[0]), control=True)
        while ws.state is _LOCAL_CLOSING and not self._corrupt:
            data = await self._read()
            if not data:
                return
            self._inbox.clear()
            self._absorb(data)


_UPGRADE_BODY = b"This server only speaks WebSocket (RFC 6455)\n"


def _plain_response(status: int, phrase: str, body: bytes, headers: tuple[str, ...] = ()) -> bytes:
    """An HTTP/1.1 response that closes the connection, for requests that never become WebSockets."""
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        *headers,
        "Connection: close",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


_UPGRADE_REQUIRED = _plain_response(426, "Upgrade Required", _UPGRADE_BODY, ("Upgrade: websocket",))
_HEAD_TOO_LARGE = _plain_response(431, "Request Header Fields Too Large", b"Request head too large\n")


def _is_upgrade(head: bytes) -> bool:
    lines = head.split(b"\r\n")[1:]
    for line in lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


async def _read_request(
    raw: socket.socket, stream: trio.SocketStream, config: NativeConfig
) -> NativeTransport | None:
    """Read the upgrade request; answer anything else (plain HTTP, bad requests) and return ``None``."""
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_REQUEST_HEAD:
            await stream.send_all(_HEAD_TOO_LARGE)
            return None
        chunk = await stream.receive_some(config.receive_buffer_size)
        if not chunk:
            raise ValueError("connection closed before the request head ended")
        buffer += chunk
    if end > MAX_REQUEST_HEAD:
        await stream.send_all(_HEAD_TOO_LARGE)
        return None
    head, trailing = buffer[: end + 4], buffer[end + 4 :]
    if not _is_upgrade(head):
        await stream.send_all(_UPGRADE_REQUIRED)
        return None
    handshake = H11Handshake(SERVER)
    try:
        handshake.receive_data(head)
        event = next(iter(handshake.events()), None)
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        extra = tuple(f"{k.decode()}: {v.decode()}" for k, v in getattr(hint, "headers", ()))
        await stream.send_all(_plain_response(status, HTTPStatus(status).phrase, f"{exc}\n".encode(), extra))
        return None
    if not isinstance(event, Request):
        await stream.send_all(_plain_response(400, "Bad Request", b"Not a WebSocket handshake\n"))
        return None
    return NativeTransport(raw, handshake, event, head[:-4], trailing, config)


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

    def watch(self, transport: NativeTransport) -> None:
        """Look after ``transport`` until ``forget``."""
        self._transports.add(transport)

    def forget(self, transport: NativeTransport) -> None:
        """Stop looking after ``transport``: its handler has finished."""
        self._transports.discard(transport)

    async def run(self) -> None:
        """Look after every watched connection; runs until cancelled."""
        interval = self._config.ping_interval
        next_ping = trio.current_time() + interval if interval is not None else None
        async with trio.open_nursery() as tasks:
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


async def handle_native_stream(
    app: TrioAPI,
    config: NativeConfig,
    state: dict[str, Any],
    supervisor: Supervisor,
    raw: socket.socket,
) -> None:
    """Serve one accepted TCP connection: handshake, then the app's handler; never raises.

    Its frame stays alive as long as the connection does, so it is kept to one
    (the handshake runs in a helper that has returned by then).
    """
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
    try:
        transport = None
        with trio.move_on_after(config.handshake_timeout) as handshake:
            transport = await _read_request(raw, stream, config)
        if handshake.cancelled_caught:
            logger.debug("Handshake not completed within %ss", config.handshake_timeout)
        if transport is not None:
            supervisor.watch(transport)
            try:
                await app.handle_websocket(WebSocket(transport.scope(state), transport=transport))
            finally:
                supervisor.forget(transport)
            # Our close frame is out (or the peer's came in): let the peer answer, within a bound.
            with trio.move_on_after(CLOSE_HANDSHAKE_TIMEOUT):
                await transport.finish()
    except (ValueError, trio.BrokenResourceError, trio.ClosedResourceError) as dropped:
        logger.debug("Connection dropped: %s", dropped)
    except Exception:
        logger.exception("Unexpected error in the native transport")
    finally:
        with trio.CancelScope(shield=True):
            await _linger_close(stream)


async def _linger_close(stream: trio.SocketStream) -> None:
    """Close the socket only once the peer has read what we sent, within ``LINGER`` seconds.

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy our last frames in flight: a 1009 close, say, to a client still
    sending the oversized message. So: end our side, discard what the peer
    still sends until it closes too (or time runs out), then close.
    """
    with trio.move_on_after(LINGER):
        try:
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass
    await trio.aclose_forcefully(stream)
