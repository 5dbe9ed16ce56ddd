"""trioapi's serving with hypercorn (``trioapi run``, ``trioapi.serve``) against misbehaving clients.

Each client here once ended the whole server, or made it hold memory without
bound, or kept a handler running after its client had gone (issue 21). The
server runs in the test's own Trio loop (``trioapi.serve(server="hypercorn")``),
so an exception that escapes one connection fails the test, the tasks and file
descriptors it leaves behind can be counted, and its memory measured with
``tracemalloc``. Every client is on 127.0.0.1 and bounded in what it sends.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial

import pytest
import trio
from apps.hypercorn_app import make_app
from servers import ROOT, ServerProcess, running_server
from test_lifecycle_live import _children as children
from test_native_transport import RawClient, frame

import trioapi
from trioapi import TrioAPI
from trioapi.server import ServerConfig

TIMEOUT = 10
MiB = 1024 * 1024


@asynccontextmanager
async def hypercorn(app: TrioAPI, config: ServerConfig | None = None) -> AsyncIterator[int]:
    """``app`` served by trioapi with hypercorn in this test's nursery, stopped on the way out.

    Keepalive pings are off unless ``config`` turns them on, so that frames come
    in a known order. Whatever escapes the server (an exception from one connection, as used to
    end the process) fails the test through the nursery.
    """
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(
            partial(
                trioapi.serve,
                app,
                port=0,
                server="hypercorn",
                config=config or ServerConfig(ping_interval=None),
                shutdown_trigger=stop.wait,
            )
        )
        try:
            yield port
        finally:
            stop.set()


def task_count() -> int:
    """How many tasks this Trio run has."""

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return count(trio.lowlevel.current_root_task())


def fd_count() -> int:
    """How many file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


async def settles(value: Callable[[], int], limit: int) -> None:
    """Wait (polling: the server's tasks end on their own) until ``value()`` is at most ``limit``."""
    with trio.fail_after(TIMEOUT):
        while value() > limit:  # noqa: ASYNC110 - counts nothing signals: polling is all there is
            await trio.sleep(0.05)


async def read_message(client: RawClient) -> bytes:
    """The payload of the next data frame, past the keepalive pings (the first comes with the 101)."""
    for _ in range(10):
        opcode, payload = await client.read_frame()
        if opcode != 9:
            assert opcode in (1, 2), (opcode, payload)
            return payload
    raise AssertionError("pings and no message")


async def echo_works(port: int) -> None:
    """A fresh connection still gets its echo: the server survived whatever came before."""
    client = await RawClient.connect(port, "/echo")
    await client.send(1, b"still here")
    assert await read_message(client) == b"still here"
    await client.stream.aclose()


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """No log record carried a traceback: nothing a client did is logged as a bug."""
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []


def upgrade_request(port: int, path: str = "/echo", extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


async def read_all(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:  # reset after the answer
        pass
    return data


# --------------------------------------------------------------------------- one connection, one failure


@pytest.mark.parametrize("path", ["/echo", "/flood"])
async def test_a_malformed_close_ends_only_its_connection(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A close frame whose payload is one byte: hypercorn shut the socket down (send_eof) as
    # something else was being sent, a keepalive ping sent with the 101 (to /echo) or the
    # handler's own frames (/flood), and the BusyResourceError of the two writes ended the
    # server, within ~100 clients.
    app, _ = make_app()
    async with hypercorn(app, ServerConfig(ping_interval=20)) as port:
        with trio.fail_after(60):
            for _ in range(150):
                client = await RawClient.connect(port, path)
                await client.stream.send_all(bytes.fromhex("8881000000000" + "3"))
                await read_all(client.stream)
                await client.stream.aclose()
            await echo_works(port)
    no_traceback(caplog)


async def test_an_upgrade_request_with_a_body_is_refused_with_400(caplog: pytest.LogCaptureFixture) -> None:
    # h11 would hold the 101 until the body ended; hypercorn answered the body with 400 and
    # then failed the app's accept, and its cleanup, with h11 errors that ended the server.
    app, _ = make_app()
    async with hypercorn(app) as port:
        with trio.fail_after(TIMEOUT):
            for extra, body in [
                ("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
                ("Content-Length: 5\r\n", b"hello"),
            ]:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(upgrade_request(port, extra=extra) + body)
                response = await read_all(stream)
                await stream.aclose()
                assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response
                assert response.endswith(b"A WebSocket upgrade request has no body\n")
            await echo_works(port)
    no_traceback(caplog)


async def test_a_frame_sent_with_the_upgrade_request_is_read_after_the_101(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # RFC 6455 asks a client to wait for the 101; one that does not has its frame read
    # after the 101 all the same. hypercorn answered it 400, then failed as above.
    app, _ = make_app()
    async with hypercorn(app) as port:
        with trio.fail_after(TIMEOUT):
            for _ in range(5):
                client = await RawClient.connect(port, "/echo", pipelined=frame(1, b"hi"))
                assert await read_message(client) == b"hi"
                await client.stream.aclose()
            await echo_works(port)
    no_traceback(caplog)


@pytest.mark.parametrize(
    ("opcode", "payload", "code"),
    [
        pytest.param(1, b"caf\xc3", 1007, id="invalid UTF-8"),
        pytest.param(3, b"", 1002, id="reserved opcode"),
    ],
)
async def test_a_refused_frame_closes_with_its_code(
    opcode: int, payload: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    # wsproto reports these as a CloseConnection event; hypercorn dropped the TCP connection
    # without sending it, and the client saw 1006.
    app, _ = make_app()
    async with hypercorn(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/echo")
            await client.send(opcode, payload)
            assert await client.read_close() == (code, "")
            assert await client.at_eof()
            await echo_works(port)
    no_traceback(caplog)


async def test_the_101_carries_the_subprotocol_the_extension_and_the_apps_headers() -> None:
    app, _ = make_app()
    offers = "Sec-WebSocket-Protocol: other, chat.v1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
    async with hypercorn(app) as port:
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(upgrade_request(port, "/chat", offers))
            head = (await RawClient(stream).read_head()).decode().lower().split("\r\n")
            await stream.aclose()
    assert head[0].startswith("http/1.1 101")
    assert head[1:6] == [
        "sec-websocket-protocol: chat.v1",
        "sec-websocket-extensions: permessage-deflate",
        "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=",
        "upgrade: websocket",
        "connection: upgrade",
    ]
    assert "x-room: lobby" in head


async def test_keepalive_pings_start_one_interval_after_the_101() -> None:
    # hypercorn pinged as the 101 went out, when the client had just spoken; a client that
    # answered in the middle of its own first frame (Autobahn's does) corrupted that frame.
    app, _ = make_app()
    async with hypercorn(app, ServerConfig(ping_interval=0.2, idle_timeout=None)) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/echo")
            await client.send(1, b"first")
            assert await client.read_frame() == (1, b"first")
            assert await client.read_frame() == (9, b"")  # then every interval
            await client.stream.aclose()


# --------------------------------------------------------------------------- limits and memory


@contextmanager
def traced() -> Iterator[Callable[[], tuple[int, int]]]:
    """Trace allocations for the block; yields ``() -> (now, peak)``, in bytes above the start."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

        def measure() -> tuple[int, int]:
            now, peak = tracemalloc.get_traced_memory()
            return now - start, peak - start

        yield measure
    finally:
        tracemalloc.stop()


async def stream_until_refused(client: RawClient, header: bytes, body: bytes, chunk: int) -> int:
    """Send ``header``, then ``body`` in pieces of ``chunk`` bytes until the server stops reading."""
    sent = 0
    try:
        await client.stream.send_all(header)
        while sent < len(body):
            await client.stream.send_all(body[sent : sent + chunk])
            sent += chunk
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    return sent


async def oversized(port: int, header: bytes, body: bytes, extra: str = "") -> tuple[tuple[int, str], int]:
    """Send a message too big from ``header`` and ``body``; the close frame it got, and the bytes sent."""
    client = await RawClient.connect(port, "/echo", headers=extra)
    async with trio.open_nursery() as nursery:
        sent: list[int] = []

        async def send() -> None:
            sent.append(await stream_until_refused(client, header, body, 64 * 1024))

        nursery.start_soon(send)
        close = await client.read_close()
        assert await client.at_eof()
        nursery.cancel_scope.cancel()
    await client.stream.aclose()
    return close, sent[0] if sent else -1


async def test_a_frame_that_declares_a_terabyte_is_refused_and_its_memory_freed() -> None:
    # hypercorn sent 1009 and then buffered every byte that followed, as long as the client
    # streamed them (33 -> 333 MB), and kept the connection until the client closed it.
    app, _ = make_app()
    body = bytes(32 * MiB)  # 32 MiB of the declared 2^40 bytes, masked with a zero key
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 2**40) + bytes(4)
    async with hypercorn(app) as port:
        await echo_works(port)  # everything imported and warm before measuring
        with trio.fail_after(30), traced() as memory:
            close, _ = await oversized(port, header, body)
            peak = memory()[1]
            await echo_works(port)
            after = memory()[0]
    assert close == (1009, "message too big")
    assert peak < 6 * MiB, peak  # the 1 MiB limit, reads of 64 KiB, the client's 64 KiB pieces
    assert after < 1 * MiB, after


async def test_a_deflate_bomb_is_refused_with_inflation_bounded_by_the_limit() -> None:
    # wsproto's permessage-deflate inflated a frame whole before hypercorn's limit looked at
    # it: 1 MB on the wire that inflates to 1 GiB reached 1.1 GB. Here 64 KiB inflating to
    # 64 MiB, with the default 1 MiB limit.
    app, _ = make_app()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = (deflate.compress(bytes(64 * MiB)) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
    bomb = bytearray(frame(2, payload))
    bomb[0] |= 0x40  # RSV1: compressed
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    async with hypercorn(app) as port:
        await echo_works(port)
        with trio.fail_after(30), traced() as memory:
            close, _ = await oversized(port, b"", bytes(bomb), offer)
            peak = memory()[1]
            await echo_works(port)
            after = memory()[0]
    assert close == (1009, "message too big")
    assert peak < 6 * MiB, peak
    assert after < 1 * MiB, after


async def test_compressed_messages_up_to_the_limit_are_inflated_whole() -> None:
    app, _ = make_app()
    config = ServerConfig(max_message_size=100_000, ping_interval=None)
    async with hypercorn(app, config) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(
                port, "/echo", headers="Sec-WebSocket-Extensions: permessage-deflate\r\n"
            )
            for text in ("a" * 100_000, "fragmented " * 1000):
                deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
                payload = (deflate.compress(text.encode()) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
                half = len(payload) // 2
                # In two fragments with a ping between them (RSV1 marks the first only):
                # wsproto's own inflater forgot at the ping that the message was compressed.
                first = bytearray(frame(1, payload[:half]))
                first[0] = 0x40 | 0x01  # RSV1, not final
                last = bytearray(frame(0, payload[half:]))
                await client.stream.send_all(bytes(first) + frame(9, b"p") + bytes(last))
                assert await client.read_frame() == (10, b"p")
                reply = await read_message(client)
                inflater = zlib.decompressobj(-15)
                assert inflater.decompress(reply + b"\x00\x00\xff\xff").decode() == text
            await client.stream.send_all(frame(1, b"x" * 100_001))
            assert await client.read_close() == (1009, "message too big")


# --------------------------------------------------------------------------- what a connection leaves


async def test_a_closed_connection_leaves_no_task_behind_with_keepalive_on() -> None:
    # hypercorn's keepalive task slept out its interval (20 s by default) after its socket
    # had closed, and held the whole connection (some 18 KB) that long.
    app, _ = make_app()
    async with hypercorn(app, ServerConfig(ping_interval=20)) as port:
        await echo_works(port)
        await settles(task_count, task_count())  # the first connection's tasks are gone
        baseline = task_count()
        with trio.fail_after(TIMEOUT):
            for _ in range(20):
                client = await RawClient.connect(port, "/echo")
                await client.send(8, struct.pack("!H", 1000))
                while (frame_ := await client.read_frame())[0] == 9:  # keepalive pings first
                    pass
                assert frame_ == (8, struct.pack("!H", 1000))
                await client.stream.aclose()
        await settles(task_count, baseline)


PUSH_ENDINGS = ["close 1000", "FIN", "reset", "kill -9"]


async def leave(port: int, how: str) -> None:
    """Open ``/push``, read a tick, then leave as ``how`` says."""
    if how == "kill -9":
        client = f"""
import socket, sys
s = socket.create_connection(("127.0.0.1", {port}))
s.sendall({upgrade_request(port, "/push")!r})
while b"tick" not in s.recv(65536):
    pass
print("ready", flush=True)
sys.stdin.read()
"""
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    [sys.executable, "-c", client],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    check=False,
                )
            )
            assert process.stdout is not None
            while b"ready" not in await process.stdout.receive_some():
                pass
            process.kill()
        return
    client = await RawClient.connect(port, "/push")
    assert await read_message(client) == b"tick"
    if how == "close 1000":
        await client.send(8, struct.pack("!H", 1000))
        await client.stream.aclose()
    elif how == "FIN":
        await client.stream.send_eof()  # and keep the socket open: only the FIN tells
        await trio.sleep(0.1)
        await client.stream.aclose()
    else:
        client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.stream.aclose()


@pytest.mark.parametrize("how", PUSH_ENDINGS)
async def test_a_push_only_handler_ends_when_its_client_leaves(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A FastAPI-style loop that only sends: hypercorn drops sends once the peer has gone, and
    # the disconnect waited unread, so the loop ran on (90k sends in 10 s, fds held).
    app, ending = make_app()
    async with hypercorn(app, ServerConfig()) as port:  # keepalive on, as trioapi run has it
        await echo_works(port)
        await settles(task_count, task_count())
        tasks, fds = task_count(), fd_count()
        with trio.fail_after(TIMEOUT):
            await leave(port, how)
            await ending.done.wait()
        assert [exc.code for exc in ending.seen] == [1006]  # hypercorn reports every peer's close as 1006
        await settles(task_count, tasks)
        await settles(fd_count, fds)
    no_traceback(caplog)


async def test_a_send_only_loop_with_no_other_await_ends_when_its_client_leaves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # hypercorn dropped sends after the stream had closed without a checkpoint: the loop
    # then never let another task run, and the whole server froze.
    app, ending = make_app()
    async with hypercorn(app) as port:
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, "/flood")
            assert await read_message(client) == b"x" * 1000
            client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await client.stream.aclose()
            await ending.done.wait()
            await echo_works(port)
    assert [exc.code for exc in ending.seen] == [1006]
    no_traceback(caplog)


# --------------------------------------------------------------------------- HTTP through the same loop


async def test_http_routes_keep_alive_and_shutdown_closes_idle_connections() -> None:
    app, _ = make_app()
    async with hypercorn(app) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(TIMEOUT):
            for _ in range(2):  # the second request on the same connection
                await stream.send_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                response = b""
                while not response.endswith(b"ok"):
                    response += await stream.receive_some(65536)
                assert response.startswith(b"HTTP/1.1 200 ")
    # Shutdown (leaving the block) closed the idle keep-alive connection.
    with trio.fail_after(TIMEOUT):
        assert await read_all(stream) == b""
    await stream.aclose()


async def test_pipelined_http_requests_are_all_answered() -> None:
    app, _ = make_app()
    async with hypercorn(app) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(TIMEOUT):
            request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            await stream.send_all(
                request * 2 + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
            )
            responses = await read_all(stream)
        await stream.aclose()
    assert responses.count(b"HTTP/1.1 200 ") == 3, responses


async def test_an_upgrade_after_a_request_on_the_same_connection_is_served_like_a_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A keep-alive connection's later request is read whole first too (its predecessor's
    # body counted out): its frame sent with the upgrade request reached hypercorn before
    # the 101, and met the same failure as on a first request.
    app, _ = make_app()
    async with hypercorn(app) as port:
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"POST /body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9\r\n\r\nsome")
            await stream.send_all(b" body")
            response = b""
            while not response.endswith(b"some body"):
                response += await stream.receive_some(65536)
            client = RawClient(stream)
            await stream.send_all(upgrade_request(port) + frame(1, b"hi"))
            assert (await client.read_head()).startswith(b"HTTP/1.1 101")
            assert await read_message(client) == b"hi"
            await stream.aclose()
    no_traceback(caplog)


# --------------------------------------------------------------------------- plain hypercorn


@pytest.fixture(scope="module")
def plain_hypercorn() -> Iterator[ServerProcess]:
    """``hypercorn --worker-class trio`` (its own CLI, one worker) serving ``apps.hypercorn_app``."""
    with running_server(
        "hypercorn", "apps.hypercorn_app:app", env={"PYTHONPATH": str(ROOT / "tests")}
    ) as server:
        # One connection first, so that the worker is up and has every file it keeps open.
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as warm_up:
            warm_up.sendall(upgrade_request(server.port, "/push"))
            assert warm_up.recv(65536).startswith(b"HTTP/1.1 101")
        deadline = time.monotonic() + TIMEOUT
        while "push ended" not in server.output:
            assert time.monotonic() < deadline, server.output
            time.sleep(0.05)
        yield server


@pytest.mark.parametrize("how", PUSH_ENDINGS)
async def test_a_push_only_handler_ends_on_plain_hypercorn_too(
    plain_hypercorn: ServerProcess, how: str
) -> None:
    server = plain_hypercorn
    (worker,) = [pid for pid, cmd in children(server.process.pid).items() if "resource_tracker" not in cmd]
    ended = server.output.count("push ended")
    fds = len(os.listdir(f"/proc/{worker}/fd"))
    with trio.fail_after(TIMEOUT):
        await leave(server.port, how)
        while server.output.count("push ended") == ended:  # noqa: ASYNC110 - another process's output
            await trio.sleep(0.05)
    await settles(lambda: len(os.listdir(f"/proc/{worker}/fd")), fds)
    assert "push ended 1006" in server.output
    assert "Traceback" not in server.output, server.output


async def test_a_send_only_loop_with_no_other_await_ends_on_plain_hypercorn_too(
    plain_hypercorn: ServerProcess,
) -> None:
    # hypercorn's own send returns at once, without a checkpoint, once the stream has
    # closed: without one of trioapi's, the loop never let the worker's other tasks run.
    server = plain_hypercorn
    ended = server.output.count("push ended")
    with trio.fail_after(TIMEOUT):
        client = await RawClient.connect(server.port, "/flood")
        assert await read_message(client) == b"x" * 1000
        client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.stream.aclose()
        while server.output.count("push ended") == ended:  # noqa: ASYNC110 - another process's output
            await trio.sleep(0.05)
        await echo_works(server.port)
    assert "push ended 1006" in server.output
    assert "Traceback" not in server.output, server.output
