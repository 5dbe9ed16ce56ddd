"""The native transport's own machinery, served in-process and driven from raw sockets.

The handler reads its socket itself while it waits in ``receive_*``; these tests
cover what happens when it does *not*: pings and closes still answered by the
stand-in reader (the registry's, as on every server), messages kept for the handler, overdue close
handshakes and dead peers dropped, a send cancelled half-way, and frames that
arrive in the same packet as the handshake.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing
from servers import running_server
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
        self.head = b""  # the server's response to the upgrade request

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
        client.head = await client.read_head()
        assert client.head.startswith(b"HTTP/1.1 101"), client.head
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
        first, payload = await self.read_whole_frame()
        return first & 0x0F, payload

    async def read_whole_frame(self) -> tuple[int, bytes]:
        """The next frame's first byte (FIN, RSV1-3, opcode) and payload."""
        first, second = await self._need(2)
        assert not second & 0x80, "a server must not mask its frames"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self._need(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self._need(8))
        return first, await self._need(size)

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
    """One final client frame, masked as RFC 6455 requires (``opcode | 0x40``: compressed)."""
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
                for n in range(6):  # several messages, all kept for the handler
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

    # On a listener on every address, the local one is asked of the connection's socket.
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(trioapi.serve, app, host="0.0.0.0", port=0, server="native"))
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/addresses")
            _, payload = await client.read_frame()
            ours = client.stream.socket.getsockname()
        nursery.cancel_scope.cancel()
    assert json.loads(payload)[:2] == [[ours[0], ours[1]], ["127.0.0.1", port]]


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


# -- permessage-deflate ------------------------------------------------------------

OFFER_DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


def deflated(data: bytes) -> bytes:
    """``data`` as a client compresses a message (RFC 7692): raw deflate, flushed, tail stripped."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


async def test_permessage_deflate_is_agreed_and_compresses_both_ways() -> None:
    app, _ = echo_app("/echo")
    text = json.dumps([{"user": "ada", "text": "hello, room"}] * 300)
    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/echo", headers=OFFER_DEFLATE)
            assert b"\r\nsec-websocket-extensions: permessage-deflate\r\n" in client.head.lower() + b"\r\n"
            stream = zlib.decompressobj(-15)  # the client's decompressor, for every message
            for _ in range(3):  # the second and third may refer back to the first (context takeover)
                await client.send(0x1 | 0x40, deflated(text.encode()))
                first, payload = await client.read_whole_frame()
                assert first == 0x80 | 0x40 | 0x1  # final, compressed, text
                assert len(payload) < len(text) // 10
                assert stream.decompress(payload + b"\x00\x00\xff\xff") == text.encode()
            await client.send(0x1, b"plain")  # an uncompressed message is fine too
            first, payload = await client.read_whole_frame()
            assert first == 0x80 | 0x40 | 0x1
            assert stream.decompress(payload + b"\x00\x00\xff\xff") == b"plain"


async def test_a_deflate_bomb_is_closed_with_1009_and_the_server_carries_on() -> None:
    app, ending = echo_app("/echo")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(64))  # 64 MiB of NULs
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    async with native(app) as port:  # the default limit: 1 MiB
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/echo", headers=OFFER_DEFLATE)
            await client.send(0x1 | 0x40, bomb)
            assert await client.read_close() == (1009, "message too big")
            await ending.done.wait()
            async with open_websocket_url(f"ws://127.0.0.1:{port}/echo") as ws:
                await ws.send_message("still serving")
                assert await ws.get_message() == "still serving"
    assert ending.seen[0].code == 1009


async def test_with_compression_off_the_offer_is_declined_and_rsv1_is_a_protocol_error() -> None:
    app, ending = echo_app("/echo")
    async with native(app, ServerConfig(compression=False)) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/echo", headers=OFFER_DEFLATE)
            assert b"sec-websocket-extensions" not in client.head.lower()
            await client.send(0x1 | 0x40, deflated(b"compressed anyway"))
            assert await client.read_close() == (1002, "")
            await ending.done.wait()
    assert ending.seen[0].code == 1002


async def test_trioapi_run_no_compression_declines_the_offer() -> None:
    # "trioapi-hypercorn" is plain `trioapi run`; the flags pick the native server.
    with running_server(
        "trioapi-hypercorn", "examples.basic:app", "--server", "native", "--no-compression"
    ) as server:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(server.port, "/ws", headers=OFFER_DEFLATE)
            assert b"sec-websocket-extensions" not in client.head.lower()
            await client.send(0x1, b"hi")
            assert await client.read_frame() == (0x1, b"Message text was: hi")
        assert server.terminate() == 0


async def test_a_compressed_send_cancelled_before_it_went_out_leaves_later_messages_readable() -> None:
    app = TrioAPI()
    done = trio.Event()

    @app.websocket("/push")
    async def push(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("first " * 100)
        with trio.CancelScope() as scope:
            scope.cancel()  # cancelled in turn, before its frame is written
            await websocket.send_text("never sent " * 100)
        await websocket.send_text("first " * 100 + "again")
        done.set()
        await websocket.wait_disconnected()

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/push", headers=OFFER_DEFLATE)
            await done.wait()
            stream = zlib.decompressobj(-15)
            got = []
            for _ in range(2):
                _, payload = await client.read_whole_frame()
                got.append(stream.decompress(payload + b"\x00\x00\xff\xff").decode())
    assert got == ["first " * 100, "first " * 100 + "again"]


# -- incremental UTF-8 -------------------------------------------------------------------


async def test_invalid_utf8_closes_1007_while_its_frame_is_still_arriving() -> None:
    app, ending = echo_app("/echo")
    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/echo")
            whole = frame(0x1, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited" * 1000)
            await client.stream.send_all(whole[:30])  # the invalid bytes, and 6,000 more to come
            assert await client.read_close() == (1007, "")
            await ending.done.wait()
    assert ending.seen[0].code == 1007


# -- keepalive: spread over short ticks ---------------------------------------------------


class WatchedConnection:
    """What the supervisor asks of a connection, recording when it was asked."""

    def __init__(self, visits: list[tuple[float, int]], number: int) -> None:
        self.visits = visits
        self.number = number
        self._supervisor: object = None
        self._next_ping = 0.0

    def overdue_close(self, now: float) -> bool:
        return False

    def keep_alive(self, now: float, interval: float, timeout: float) -> bool:
        self.visits.append((now, self.number))
        return True


async def test_a_keepalive_round_over_many_connections_is_spread_over_short_ticks(
    autojump_clock: trio.abc.Clock,
) -> None:
    count = 1000
    visits: list[tuple[float, int]] = []
    # A ping due for every connection at every look: the most a round can have.
    config = native_transport.NativeConfig(ping_interval=native_transport.IDLE_CHECK_INTERVAL)
    supervisor = native_transport.Supervisor(config)
    for number in range(count):
        supervisor.watch(WatchedConnection(visits, number))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervisor.run)
        await trio.sleep(native_transport.IDLE_CHECK_INTERVAL + 0.001)  # one round
        nursery.cancel_scope.cancel()
    ticks: dict[float, int] = {}
    for when, _ in visits:
        ticks[when] = ticks.get(when, 0) + 1
    assert sorted(number for _, number in visits) == list(range(count))  # each connection once
    assert max(ticks.values()) <= native_transport.PINGS_PER_TICK  # never all in one go
    assert len(ticks) >= count // native_transport.PINGS_PER_TICK


async def test_compressed_frames_from_the_hub_and_the_handler_reach_a_slow_reader_in_order() -> None:
    app = TrioAPI()
    hub = ConnectionHub(max_backlog=1000)
    joined = trio.Event()
    count = 60

    @app.websocket("/member")
    async def member(websocket: WebSocket) -> None:
        await websocket.accept()
        await hub.join("r", websocket)
        joined.set()
        for n in range(count):
            await websocket.send_text(f"own {n} " + "o" * (n * 37 % 3000))
            await trio.sleep(0.005)
        await websocket.wait_disconnected()

    @app.websocket("/publisher")
    async def publisher(websocket: WebSocket) -> None:
        await websocket.accept()
        await joined.wait()
        for n in range(count):
            # Large and incompressible, one at a time: the hub writes each at once (write_now)
            # until the kernel takes only part of one, which a supervisor task then finishes.
            await hub.broadcast("r", f"hub {n} " + os.urandom(50_000).hex())
            await trio.sleep(0.005)
        await websocket.wait_disconnected()

    async with native(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/member", headers=OFFER_DEFLATE, rcvbuf=4096)
            publisher_client = await RawClient.connect(port, "/publisher")
            await trio.sleep(0.5)  # read nothing for a while: the kernel's buffers fill up
            stream = zlib.decompressobj(-15)  # one stream: every frame refers to those before
            got = []
            for _ in range(2 * count):
                first, payload = await client.read_whole_frame()
                assert first == 0x80 | 0x40 | 0x1
                got.append(stream.decompress(payload + b"\x00\x00\xff\xff").decode())
            await publisher_client.stream.aclose()
    own = [m for m in got if m.startswith("own")]
    assert own == [f"own {n} " + "o" * (n * 37 % 3000) for n in range(count)]
    assert [m.split(" ")[1] for m in got if m.startswith("hub")] == [str(n) for n in range(count)]


class FullOnce:
    """A server socket whose next ``send`` finds the kernel's buffer full, as a slow reader's would."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.full = False

    def send(self, data: bytes) -> int:
        if self.full:
            self.full = False
            raise BlockingIOError
        return self._sock.send(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


async def test_a_compressed_frame_the_socket_cannot_take_now_is_written_later_not_dropped() -> None:
    server_sock, client_sock = socket.socketpair()
    with server_sock, client_sock:
        server_sock.setblocking(False)
        client_sock.sendall(
            b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + OFFER_DEFLATE.encode()
            + b"\r\n"
        )
        raw = FullOnce(server_sock)
        config = native_transport.NativeConfig()
        with trio.fail_after(TIMEOUT):
            request = await native_server.read_request(raw, config)  # type: ignore[arg-type]
            assert request is not None
            transport = request[0]
            supervisor = native_transport.Supervisor(config)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(supervisor.run)
                await trio.testing.wait_all_tasks_blocked()  # the supervisor is running
                supervisor.watch(transport)
                await transport.accept(None, [])
                raw.full = True
                first = "a message the hub writes at once " * 20
                if not transport.write_now(first):  # as the hub does: queue it, send it later
                    await transport.send(first)
                await transport.send("and the next one, which refers back to it " * 20)
                supervisor.forget(transport)
                nursery.cancel_scope.cancel()
        client_sock.setblocking(False)
        wire = client_sock.recv(1 << 20)
    head, _, frames = wire.partition(b"\r\n\r\n")
    assert b"permessage-deflate" in head
    stream = zlib.decompressobj(-15)
    got = []
    while frames:
        assert frames[0] == 0x80 | 0x40 | 0x1 and frames[1] < 126
        payload, frames = frames[2 : 2 + frames[1]], frames[2 + frames[1] :]
        got.append(stream.decompress(payload + b"\x00\x00\xff\xff").decode())
    assert got == [first, "and the next one, which refers back to it " * 20]
