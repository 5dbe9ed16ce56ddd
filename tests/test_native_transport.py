"""The native transport's own machinery, served in-process and driven from raw sockets.

The handler reads its socket itself while it waits in ``receive_*``; these tests
cover what happens when it does *not*: pings and closes still answered by the
supervisor's stand-in reader, messages kept for the handler, overdue close
handshakes and dead peers dropped, a send cancelled half-way, and frames that
arrive in the same packet as the handshake.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

import trioapi
from trioapi import TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.broadcast import ConnectionHub
from trioapi.server import ServerConfig
from trioapi.server import _native as native_server
from trioapi.transports import native as native_transport

TIMEOUT = 10


@asynccontextmanager
async def native(app: TrioAPI, config: ServerConfig | None = None) -> AsyncIterator[int]:
    """``app`` on the native transport in this test's nursery, stopped on the way out."""
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(partial(trioapi.serve, app, port=0, server="native", config=config))
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()


class RawClient:
    """A WebSocket client written frame by frame, to do what polite clients never do."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(
        cls, port: int, path: str, *, pipelined: bytes = b"", headers: str = "", rcvbuf: int | None = None
    ) -> RawClient:
        sock = trio.socket.socket()
        if rcvbuf is not None:  # a small window makes the server's writes block early
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        client = cls(stream)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        )
        await stream.send_all(request.encode() + pipelined)
        head = await client.read_head()
        assert head.startswith(b"HTTP/1.1 101"), head
        return client

    async def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    async def _need(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def read_frame(self) -> tuple[int, bytes]:
        """The next (opcode, payload) from the server (whose frames are never masked)."""
        first, second = await self._need(2)
        assert not second & 0x80, "a server must not mask its frames"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self._need(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self._need(8))
        return first & 0x0F, await self._need(size)

    async def send(self, opcode: int, payload: bytes) -> None:
        await self.stream.send_all(frame(opcode, payload))

    async def read_close(self) -> tuple[int, str]:
        opcode, payload = await self.read_frame()
        assert opcode == 8, (opcode, payload)
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def at_eof(self) -> bool:
        try:
            return await self.stream.receive_some(65536) == b""
        except trio.BrokenResourceError:  # reset
            return True


def frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked as RFC 6455 requires."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Ending:
    """How a test handler's connection ended: the ``WebSocketDisconnect`` it saw, and when."""

    def __init__(self) -> None:
        self.seen: list[WebSocketDisconnect] = []
        self.done = trio.Event()


def echo_app(
    path: str, before: Callable[[WebSocket], Awaitable[None]] | None = None
) -> tuple[TrioAPI, Ending]:
    """An app whose handler accepts, awaits ``before``, then echoes until the client is gone."""
    app = TrioAPI()
    ending = Ending()

    @app.websocket(path)
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        if before is not None:
            await before(websocket)
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect as exc:
            ending.seen.append(exc)
            ending.done.set()

    return app, ending


async def test_a_handler_that_is_not_receiving_still_answers_pings_and_loses_no_message() -> None:
    app = TrioAPI()
    release = trio.Event()
    received: list[str] = []

    @app.websocket("/busy")
    async def busy(websocket: WebSocket) -> None:
        await websocket.accept()
        await release.wait()  # busy elsewhere: nobody in receive_*
        for _ in range(6):
            received.append(await websocket.receive_text())
        await websocket.send_text("done")

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/busy") as ws:
                for n in range(6):  # more than the stand-in holds (message_queue_size=4)
                    await ws.send_message(f"m{n}")
                await ws.ping(b"are you there")  # returns on the pong
                release.set()
                assert await ws.get_message() == "done"
    assert received == [f"m{n}" for n in range(6)]


async def test_a_peer_close_is_answered_while_the_handler_is_busy() -> None:
    release = trio.Event()

    async def busy(websocket: WebSocket) -> None:
        await release.wait()

    app, ending = echo_app("/busy", busy)
    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/busy")
            await client.send(8, struct.pack("!H", 4001) + b"bye")
            # The stand-in reader answers the close while the handler sleeps.
            assert await client.read_close() == (4001, "bye")
            release.set()
            assert await client.at_eof()
            await ending.done.wait()
    assert [(exc.code, exc.reason) for exc in ending.seen] == [(4001, "bye")]


async def test_a_close_the_peer_never_answers_ends_a_receiving_handler() -> None:
    async def close_soon(websocket: WebSocket) -> None:
        await trio.sleep(0.1)
        await websocket.close(4002, "from another task")

    async def start_closing(websocket: WebSocket) -> None:
        websocket.start_soon(close_soon, websocket)

    app, ending = echo_app("/closing", start_closing)
    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/closing")
            assert await client.read_close() == (4002, "from another task")
            # Never answer: within the close handshake timeout the server drops us.
            assert await client.at_eof()
            await ending.done.wait()
    assert [exc.code for exc in ending.seen] == [1006]


async def test_a_peer_that_answers_no_ping_is_dropped() -> None:
    app, ending = echo_app("/wait")
    config = ServerConfig(ping_interval=0.5, idle_timeout=1.5)  # a pong is due within 1 s
    async with native(app, config) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/wait")
            opcode, _ = await client.read_frame()
            assert opcode == 9  # the keepalive ping, left unanswered
            assert await client.at_eof()
            await ending.done.wait()
    assert [exc.code for exc in ending.seen] == [1006]


async def test_a_send_cancelled_half_way_drops_the_connection_instead_of_corrupting_it() -> None:
    app = TrioAPI()
    outcome: list[str] = []
    ended = trio.Event()

    @app.websocket("/flood")
    async def flood(websocket: WebSocket) -> None:
        await websocket.accept()
        with trio.move_on_after(0.5) as timer:
            await websocket.send_bytes(b"x" * 50_000_000)  # far more than the socket buffers
        outcome.append("cancelled" if timer.cancelled_caught else "sent")
        try:
            await websocket.send_text("after")
        except WebSocketDisconnect as exc:
            outcome.append(f"disconnect {exc.code}")
        ended.set()

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/flood")
            await ended.wait()  # reading nothing meanwhile
            # The first frame's header arrived; its payload was cut off by the drop.
            opcode, _ = struct.unpack("!BB", await client._need(2))
            assert opcode == 0x82
            with pytest.raises(EOFError):
                for _ in range(64):  # 50 MB would be 48 of these: the frame never ends
                    await client._need(1 << 20)
    assert outcome == ["cancelled", "disconnect 1006"]


async def test_frames_in_the_same_packet_as_the_handshake_are_kept() -> None:
    app = TrioAPI()

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        for _ in range(2):
            await websocket.send_text(await websocket.receive_text())

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            early = frame(1, b"first") + frame(1, b"second")
            client = await RawClient.connect(port, "/echo", pipelined=early)
            assert await client.read_frame() == (1, b"first")
            assert await client.read_frame() == (1, b"second")


async def test_the_scope_has_every_request_header_lowercased() -> None:
    app = TrioAPI()

    @app.websocket("/headers")
    async def headers(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {
                "host": websocket.headers["host"],
                "custom": websocket.headers["x-custom"],
                "client": websocket.client.host if websocket.client else None,
            }
        )

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/headers", headers="X-Custom:  spaced value \r\n")
            opcode, payload = await client.read_frame()
    assert opcode == 1
    assert payload.decode() == (f'{{"host":"127.0.0.1:{port}","custom":"spaced value","client":"127.0.0.1"}}')


async def test_the_scope_has_both_addresses_of_the_connection() -> None:
    """``client`` and ``server``: from accept() and the listener, or asked of the socket."""
    app = TrioAPI()

    @app.websocket("/addresses")
    async def addresses(websocket: WebSocket) -> None:
        await websocket.accept()
        raw = websocket._transport._raw  # type: ignore[attr-defined]
        nodelay = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await websocket.send_json([websocket.scope["client"], websocket.scope["server"], nodelay])

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/addresses")
            _, payload = await client.read_frame()
            ours = client.stream.socket.getsockname()
    # Small frames go out at once: no Nagle delay on an accepted socket.
    assert json.loads(payload) == [[ours[0], ours[1]], ["127.0.0.1", port], 1]

    # Without them (a listener on every address leaves the local one to the socket):
    with trio.fail_after(TIMEOUT), trio.socket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        async with await trio.open_tcp_stream(*listener.getsockname()) as peer:
            accepted, _ = await listener.accept()
            await peer.send_all(
                b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            with socket.socket(fileno=accepted.detach()) as raw:
                raw.setblocking(False)
                transport = await native_server.read_request(raw, native_transport.NativeConfig())
                assert transport is not None
                scope = transport.scope({})
            assert scope["client"] == peer.socket.getsockname()[:2]
            assert scope["server"] == listener.getsockname()[:2]


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            b"426",
        ),
        (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + b"X-Filler: "
            + b"y" * 20_000
            + b"\r\n\r\n",
            b"431",
        ),
        (
            b"POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            b"400",
        ),
    ],
    ids=["old version", "huge head", "not GET"],
)
async def test_bad_handshakes_get_an_http_answer(request_head: bytes, status: bytes) -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def never(websocket: WebSocket) -> None:  # pragma: no cover - never reached
        await websocket.accept()

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(request_head)
                response = b""
                while chunk := await stream.receive_some(65536):
                    response += chunk
    assert response.split(b" ", 2)[1] == status, response[:200]
    if status == b"426":
        assert b"Sec-WebSocket-Version: 13" in response


async def test_a_hub_member_that_reads_slowly_gets_every_large_frame_whole_and_in_order() -> None:
    app = TrioAPI()
    hub = ConnectionHub(max_backlog=50)
    big = [bytes([n]) * 300_000 for n in range(6)]  # each more than the kernel takes at once

    @app.websocket("/room")
    async def room(websocket: WebSocket) -> None:
        await websocket.accept()
        await hub.join("r", websocket)
        for payload in big:
            await hub.broadcast("r", payload)
            await trio.sleep(0.05)  # the sender goes back to waiting: each frame wakes it
        await websocket.wait_disconnected()

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/room", rcvbuf=4096)
            await trio.sleep(0.5)  # read nothing for a while: the kernel buffers fill up
            for payload in big:
                assert await client.read_frame() == (2, payload)


async def test_a_client_that_vanishes_mid_message_is_a_1006_and_the_server_carries_on() -> None:
    app, ending = echo_app("/echo")
    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/echo")
            whole = frame(1, b"z" * 10_000)
            await client.stream.send_all(whole[:5000])  # half a frame, then gone
            await client.stream.aclose()
            await ending.done.wait()
            async with open_websocket_url(f"ws://127.0.0.1:{port}/echo") as ws:
                await ws.send_message("still serving")
                assert await ws.get_message() == "still serving"
                await ws.aclose()
    assert ending.seen[0].code == 1006


async def test_closing_while_the_client_still_sends_keeps_the_close_code() -> None:
    app = TrioAPI()

    @app.websocket("/one")
    async def one(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await websocket.close(4003, "one is enough")

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/one") as ws:
                await ws.send_message("one")
                with pytest.raises(ConnectionClosed) as info:
                    for n in range(100):
                        await ws.send_message(f"more {n}")
                        await trio.sleep(0.01)
                    await ws.get_message()
    assert info.value.reason.code == 4003


async def test_hub_frames_written_at_once_never_cut_into_the_handlers_own_sends() -> None:
    app = TrioAPI()
    hub = ConnectionHub(max_backlog=1000)
    joined = trio.Event()

    @app.websocket("/member")
    async def member(websocket: WebSocket) -> None:
        await websocket.accept()
        await hub.join("r", websocket)
        joined.set()
        for n in range(300):
            await websocket.send_text(f"own {n} " + "o" * (n * 37 % 3000))
        await websocket.wait_disconnected()

    @app.websocket("/publisher")
    async def publisher(websocket: WebSocket) -> None:
        await websocket.accept()
        await joined.wait()
        for n in range(300):
            await hub.broadcast("r", f"hub {n} " + "h" * (n * 53 % 3000))
        await websocket.wait_disconnected()

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/member") as ws:
                async with open_websocket_url(f"ws://127.0.0.1:{port}/publisher"):
                    got = [await ws.get_message() for _ in range(600)]
    for source, size in (("own", 37), ("hub", 53)):
        mine = [m for m in got if isinstance(m, str) and m.startswith(source)]
        assert mine == [f"{source} {n} " + source[0] * (n * size % 3000) for n in range(300)]
