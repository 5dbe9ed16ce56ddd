"""One app, four ways to serve it, and clients that see what a real client sees.

For ``test_transport_contract.py``: ``Transport(kind).serve(app)`` runs an app

- ``"memory"``: in ``trioapi.testing.TestClient`` (``raise_server_exceptions=False``,
  so a test sees what a client on the wire would see);
- ``"hypercorn"``, ``"native"``, ``"trio-websocket"``: on a real server in this
  test's nursery (``trioapi.serve(app, server=kind)`` on an ephemeral 127.0.0.1
  port), so handler-side facts (what a handler saw, ``app.connections``, log
  records) are read directly, and a shutdown is the server's own.

``Served.connect`` opens a WebSocket with a client library (trio-websocket's
client, or the ``websockets`` library's Trio client; ``Served.clients`` names
those that apply), and ``Served.peer`` opens one that can leave the way real
clients do: a close frame, a FIN, a TCP reset. Every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import struct
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import attrs
import trio
import websockets.exceptions
import websockets.trio.client
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

import trioapi
from trioapi import TrioAPI, WebSocketDisconnect
from trioapi.server import ServerConfig
from trioapi.testing import TestClient, WebSocketRejected, WebSocketTestSession

#: The four ways to serve an app, as the contract suite names them.
KINDS = ("memory", "hypercorn", "native", "trio-websocket")
#: The client libraries used against a real server.
CLIENTS = ("trio-websocket", "websockets")
#: Bound on every single wait for a server or a client.
TIMEOUT = 5.0
#: Bound on a whole test's serving, so that a bug fails a test instead of hanging the run.
BOUND = 30.0

Headers = dict[str, str]


class Closed(Exception):
    """The server ended the connection: its close frame's code and reason (1006 and "" without one)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class Refused(Exception):
    """The server refused the handshake with an HTTP response."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        super().__init__(status, headers, body)
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The response body parsed as JSON."""
        return json.loads(self.body)


class Client(Protocol):
    """An open WebSocket, seen from the client side."""

    name: str

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server accepted."""

    @property
    def response_headers(self) -> Headers:
        """The headers of the server's 101 response (names lowercased)."""

    async def send_text(self, text: str) -> None:
        """Send a text message."""

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message."""

    async def receive(self) -> str | bytes:
        """The next message; ``Closed`` once the server has closed."""

    async def close(self, code: int, reason: str) -> tuple[int, str] | None:
        """Close with ``code`` and ``reason``; the server's answering close frame (``None`` in memory)."""


async def closed(client: Client, limit: int = 100) -> tuple[int, str]:
    """Skip messages until the server closes (at most ``limit``); its ``(code, reason)``."""
    for _ in range(limit):
        try:
            await client.receive()
        except Closed as exc:
            return exc.code, exc.reason
    raise AssertionError(f"{client.name}: the server did not close after {limit} messages")


# -- clients ----------------------------------------------------------------------------


@attrs.define
class _MemoryClient:
    session: WebSocketTestSession
    name: str = "memory"

    @property
    def subprotocol(self) -> str | None:
        return self.session.accepted_subprotocol

    @property
    def response_headers(self) -> Headers:
        return dict(self.session.response_headers.items())

    async def send_text(self, text: str) -> None:
        await self.session.send_text(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.session.send_bytes(data)

    async def receive(self) -> str | bytes:
        try:
            return await self.session.receive()
        except WebSocketDisconnect as exc:
            raise Closed(exc.code, exc.reason) from None

    async def close(self, code: int, reason: str) -> tuple[int, str] | None:
        await self.session.close(code, reason)
        return None  # no close frame comes back in memory


@attrs.define
class _TrioWebSocketClient:
    connection: Any  # trio_websocket.WebSocketConnection
    name: str = "trio-websocket"

    @property
    def subprotocol(self) -> str | None:
        subprotocol: str | None = self.connection.subprotocol
        return subprotocol

    @property
    def response_headers(self) -> Headers:
        return {k.decode().lower(): v.decode() for k, v in self.connection.handshake_headers}

    async def send_text(self, text: str) -> None:
        await self.connection.send_message(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.connection.send_message(data)

    async def receive(self) -> str | bytes:
        try:
            message: str | bytes = await self.connection.get_message()
        except ConnectionClosed as exc:
            if exc.reason is None:
                raise Closed(1006, "") from None
            raise Closed(exc.reason.code, exc.reason.reason or "") from None
        return message

    async def close(self, code: int, reason: str) -> tuple[int, str] | None:
        await self.connection.aclose(code, reason)
        answer = self.connection.closed
        return answer.code, answer.reason or ""


@attrs.define
class _WebsocketsClient:
    connection: Any  # websockets.trio.client.ClientConnection
    name: str = "websockets"

    @property
    def subprotocol(self) -> str | None:
        subprotocol: str | None = self.connection.subprotocol
        return subprotocol

    @property
    def response_headers(self) -> Headers:
        return {k.lower(): v for k, v in self.connection.response.headers.raw_items()}

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.connection.send(data)

    async def receive(self) -> str | bytes:
        try:
            message: str | bytes = await self.connection.recv()
        except websockets.exceptions.ConnectionClosed as exc:
            if exc.rcvd is None:
                raise Closed(1006, "") from None
            raise Closed(exc.rcvd.code, exc.rcvd.reason) from None
        return message

    async def close(self, code: int, reason: str) -> tuple[int, str] | None:
        await self.connection.aclose(code, reason)
        return self.connection.close_code, self.connection.close_reason or ""


def _check_not_leaked(exc: trio.Cancelled) -> None:
    """trio-websocket's client can let its reader's ``Cancelled`` escape (python-trio/trio-websocket#184:
    a ping meeting its close); an enclosing nursery would swallow it and skip the rest of the test."""
    if trio.current_effective_deadline() != -math.inf:
        raise AssertionError("trio-websocket's client leaked a Cancelled out of its connection") from exc


@asynccontextmanager
async def _trio_websocket_connect(
    url: str, headers: Headers, subprotocols: Sequence[str]
) -> AsyncIterator[Client]:
    try:
        async with open_websocket_url(
            url,
            subprotocols=list(subprotocols) or None,
            extra_headers=[(k.encode(), v.encode()) for k, v in headers.items()],
            message_queue_size=64,
            max_message_size=16 * 1024 * 1024,
            connect_timeout=TIMEOUT,
            disconnect_timeout=TIMEOUT,
        ) as connection:
            yield _TrioWebSocketClient(connection)
    except ConnectionRejected as exc:
        seen = {k.decode().lower(): v.decode() for k, v in exc.headers or ()}
        raise Refused(exc.status_code, seen, exc.body or b"") from None
    except trio.Cancelled as exc:
        _check_not_leaked(exc)
        raise


@asynccontextmanager
async def _websockets_connect(
    url: str, headers: Headers, subprotocols: Sequence[str]
) -> AsyncIterator[Client]:
    try:
        async with websockets.trio.client.connect(
            url,
            additional_headers=headers,
            subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
            proxy=None,
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
            max_size=None,
        ) as connection:
            yield _WebsocketsClient(connection)
    except websockets.exceptions.InvalidStatus as exc:
        response = exc.response
        headers_seen = {k.lower(): v for k, v in response.headers.raw_items()}
        raise Refused(response.status_code, headers_seen, bytes(response.body or b"")) from None


# -- peers that leave the way real clients do ---------------------------------------------


class Peer(Protocol):
    """A connection whose client can leave with a close frame, a FIN or a reset."""

    async def receive(self) -> str | bytes:
        """The next data message (pings are skipped)."""

    async def leave(self, how: str) -> None:
        """``"close"`` (a close frame, 1000), ``"fin"`` (half-close the TCP connection) or ``"reset"``."""


@attrs.define
class _MemoryPeer:
    session: WebSocketTestSession

    async def receive(self) -> str | bytes:
        return await self.session.receive()

    async def leave(self, how: str) -> None:
        if how == "close":
            await self.session.close(1000)
        else:  # no TCP in memory: both are a connection lost without a close frame
            await self.session.vanish()


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    mask = os.urandom(4)
    return (
        bytes((0x80 | opcode, 0x80 | len(payload)))
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


@attrs.define
class SocketPeer:
    stream: trio.SocketStream
    buffer: bytes = b""

    @classmethod
    async def connect(cls, port: int, path: str) -> SocketPeer:
        peer = cls(await trio.open_tcp_stream("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        await peer.stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        while b"\r\n\r\n" not in peer.buffer:
            await peer._fill()
        head, _, peer.buffer = peer.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return peer

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise EOFError(self.buffer)
        self.buffer += chunk

    async def _need(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def _next_frame(self) -> tuple[int, bytes]:
        """The next frame that is not a keepalive ping (hypercorn pings once right after accept)."""
        for _ in range(100):
            first, second = await self._need(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self._need(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self._need(8))
            opcode, payload = first & 0x0F, await self._need(size)
            if opcode != 9:
                return opcode, payload
        raise AssertionError("nothing but pings in 100 frames")

    async def receive(self) -> str | bytes:
        opcode, payload = await self._next_frame()
        assert opcode in (1, 2), (opcode, payload)
        return payload.decode() if opcode == 1 else payload

    async def read_close(self) -> tuple[int, str]:
        """The server's close frame, which must come next: its code and reason."""
        opcode, payload = await self._next_frame()
        assert opcode == 8, (opcode, payload)
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def send(self, opcode: int, payload: bytes) -> None:
        """Send one (short) frame: 8 close, 9 ping, ..."""
        await self.stream.send_all(_frame(opcode, payload))

    async def leave(self, how: str) -> None:
        if how == "close":
            await self.send(8, struct.pack("!H", 1000))
        elif how == "fin":
            await self.stream.send_eof()
        elif how == "reset":
            self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await self.stream.aclose()
        else:
            raise ValueError(how)


# -- serving ---------------------------------------------------------------------------------


class Probe:
    """What handlers saw, recorded under a name, for the test to wait for and read."""

    def __init__(self) -> None:
        self.seen: defaultdict[str, list[Any]] = defaultdict(list)
        self._changed = trio.Event()

    def record(self, name: str, value: Any = None) -> None:
        """Note ``value`` under ``name``."""
        self.seen[name].append(value)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, name: str, count: int = 1) -> list[Any]:
        """Everything recorded under ``name``, once there are ``count`` of them (within ``TIMEOUT``)."""
        with trio.fail_after(TIMEOUT):
            while len(self.seen[name]) < count:
                await self._changed.wait()
        return self.seen[name]


@attrs.define
class Served:
    """An app being served one of the four ways."""

    kind: str
    app: TrioAPI
    config: ServerConfig
    _test_client: TestClient | None = None
    port: int = 0
    _stop: trio.Event = attrs.field(factory=trio.Event)
    _stopped: trio.Event = attrs.field(factory=trio.Event)

    @property
    def clients(self) -> tuple[str, ...]:
        """The clients this test should try, one after another."""
        return ("memory",) if self._test_client is not None else CLIENTS

    def url(self, path: str) -> str:
        """``ws://127.0.0.1:port/path``."""
        return f"ws://127.0.0.1:{self.port}{path}"

    @asynccontextmanager
    async def connect(
        self,
        path: str,
        client: str | None = None,
        *,
        headers: Headers | None = None,
        subprotocols: Sequence[str] = (),
    ) -> AsyncIterator[Client]:
        """Open a WebSocket to ``path`` with ``client`` (default: the first of ``clients``).

        ``Refused`` if the server answers the handshake with an HTTP response.
        """
        client = client or self.clients[0]
        if self._test_client is not None:
            try:
                async with self._test_client.websocket_connect(
                    path, headers=headers, subprotocols=subprotocols
                ) as session:
                    yield _MemoryClient(session)
            except WebSocketRejected as exc:
                headers_seen = {k: v for k, v in exc.headers.items()}
                raise Refused(exc.status_code, headers_seen, exc.body) from None
            return
        connect = _trio_websocket_connect if client == "trio-websocket" else _websockets_connect
        async with connect(self.url(path), headers or {}, subprotocols) as opened:
            yield opened

    @asynccontextmanager
    async def peer(self, path: str) -> AsyncIterator[Peer]:
        """A connection to ``path`` whose client can leave rudely (``Peer.leave``)."""
        if self._test_client is not None:
            async with self._test_client.websocket_connect(path) as session:
                yield _MemoryPeer(session)
            return
        async with self.socket(path) as peer:
            yield peer

    @asynccontextmanager
    async def socket(self, path: str) -> AsyncIterator[SocketPeer]:
        """A connection to ``path`` from a raw-socket client, which sends whatever it is told (live only)."""
        assert self._test_client is None, "no sockets in memory"
        peer = await SocketPeer.connect(self.port, path)
        try:
            yield peer
        finally:
            await peer.stream.aclose()

    async def shut_down(self) -> None:
        """Shut down gracefully (``config.graceful_timeout``); return once the server has stopped.

        In memory: ``app.shutdown_connections``, what the test client's server would call.
        """
        if self._test_client is not None:
            await self.app.shutdown_connections(self.config.graceful_timeout)
            return
        self._stop.set()
        with trio.fail_after(self.config.graceful_timeout + TIMEOUT):
            await self._stopped.wait()


@attrs.frozen
class Transport:
    """One of the four ways to serve an app (``kind``, one of ``KINDS``)."""

    kind: str

    @asynccontextmanager
    async def serve(self, app: TrioAPI, config: ServerConfig | None = None) -> AsyncIterator[Served]:
        """Serve ``app`` for the block (within ``BOUND``); whatever is still open at its end is cancelled.

        By default without keepalive pings (they have tests of their own): hypercorn
        pings once right after accept, and trio-websocket's client fails when that
        ping meets its own close (python-trio/trio-websocket#184).
        """
        config = config or ServerConfig(ping_interval=None, graceful_timeout=1.0)
        with trio.fail_after(BOUND):
            async with self._serving(app, config) as served:
                yield served

    @asynccontextmanager
    async def _serving(self, app: TrioAPI, config: ServerConfig) -> AsyncIterator[Served]:
        if self.kind == "memory":
            async with TestClient(app, raise_server_exceptions=False, timeout=TIMEOUT) as test_client:
                yield Served(self.kind, app, config, test_client)
            return
        async with trio.open_nursery() as nursery:
            served = Served(self.kind, app, config)

            async def run(task_status: trio.TaskStatus[int]) -> None:
                try:
                    await trioapi.serve(
                        app,
                        host="127.0.0.1",
                        port=0,
                        server=self.kind,  # type: ignore[arg-type]
                        config=config,
                        shutdown_trigger=served._stop.wait,
                        task_status=task_status,
                    )
                finally:
                    served._stopped.set()

            served.port = await nursery.start(run)
            yield served
            nursery.cancel_scope.cancel()


async def wait_until_empty(app: TrioAPI) -> None:
    """Wait (within ``TIMEOUT``) until ``app.connections`` is empty."""
    with trio.fail_after(TIMEOUT):
        while len(app.connections):  # noqa: ASYNC110 - the registry has no event to wait on
            await trio.sleep(0.01)


__all__ = [
    "CLIENTS",
    "KINDS",
    "TIMEOUT",
    "Client",
    "Closed",
    "Peer",
    "Probe",
    "Refused",
    "Served",
    "SocketPeer",
    "Transport",
    "closed",
    "wait_until_empty",
]
