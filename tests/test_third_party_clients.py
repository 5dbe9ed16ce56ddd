"""The examples on real servers, driven by third-party clients.

Every example is served by ``hypercorn --worker-class trio examples.X:app`` and by
``trioapi run examples.X:app --server native|trio-websocket`` (``KINDS``), each
server started once for the module, and driven by

- the ``websockets`` library's sync client (run in a worker thread, every call
  with a timeout),
- trio-websocket's own client (the seed's examples, at the end), and
- a raw-socket client for what no well-behaved library sends: handshakes
  without a key, plain HTTP, invalid UTF-8, unmasked frames, pings inside a
  fragmented message, frames after the server's close, a TCP reset.

Every message, close code, close reason (at most 123 bytes) and rejection is
checked against the seed and the SPEC, and the server output must hold no
traceback. Where the two servers legitimately differ it is said next to the
assertion. Known bugs are ``xfail(strict=True)`` with the reason.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from functools import partial
from typing import Any, TypeVar

import pytest
import trio
import trio_websocket
from servers import KINDS, ServerProcess, running_server
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

T = TypeVar("T")
MiB = 1024 * 1024
#: What ``trioapi run --server native|trio-websocket`` closes 1009 above (``ServerConfig``), and
#: hypercorn's own ``websocket_max_message_size`` default (the CLI has no flag for it).
LIMIT = {"native": 1 * MiB, "trio-websocket": 1 * MiB, "hypercorn": 16 * MiB}
TIMEOUT = 5.0


# --------------------------------------------------------------------------- helpers


Get = Callable[..., ServerProcess]


#: The servers this module's tests share, started together (in parallel) on first use.
SHARED = [
    *(
        (example, {})
        for example in (
            "basic",
            "path_params",
            "dependencies",
            "json_messages",
            "connection_manager",
            "query_params",
            "error_handling",
            "custom_close",
            "routes",
            "chat",
            "auth_query",
            "auth_header_or_query",
            "auth_cookie",
            "auth_subprotocol",
        )
    ),
    ("ticker", {"TICK_SECONDS": "0.05"}),
    # Tests that make a server log a traceback (on purpose, or through a bug) get their own.
    ("auth_subprotocol", {"PURPOSE": "token-only"}),
    ("custom_close", {"PURPOSE": "late-ping"}),
    ("json_messages", {"PURPOSE": "crash"}),
    ("json_messages", {"PURPOSE": "hostile"}),
    # Its own, so that no leaver of an earlier test says goodbye to this one's members.
    ("connection_manager", {"PURPOSE": "trio-websocket-client"}),
]


def _key(kind: str, example: str, env: dict[str, str]) -> tuple[Any, ...]:
    return (kind, example, tuple(sorted(env.items())))


@pytest.fixture(scope="module")
def serve() -> Iterator[Get]:
    """``serve(kind, example, **env)``: a server shared by this module's tests.

    On first use every server of ``SHARED`` is started, a few at a time; each test
    that uses one asserts its output stays free of tracebacks.
    """
    servers: dict[tuple[Any, ...], ServerProcess] = {}
    with ExitStack() as stack:

        def start(kind: str, example: str, env: dict[str, str]) -> None:
            context = running_server(kind, f"examples.{example}:app", env=env or None)
            server = context.__enter__()
            servers[_key(kind, example, env)] = server
            stack.push(context.__exit__)

        def get(kind: str, example: str, **env: str) -> ServerProcess:
            if not servers:
                with ThreadPoolExecutor(4) as pool:
                    starts = [pool.submit(start, k, e, v) for k in KINDS for e, v in SHARED]
                for started in starts:
                    started.result()
            return servers[_key(kind, example, env)]

        yield get
        for server in servers.values():  # signal them all first: they stop in parallel
            with suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGTERM)
        for server in servers.values():
            # Every server stops cleanly on one SIGTERM (sent to its process group). (A second
            # SIGTERM during shutdown kills the process outright, by design: not sent here.)
            with suppress(subprocess.TimeoutExpired):
                server.process.wait(15)
            assert server.process.returncode == 0, server.output


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking client scenario in a thread (each of its calls has its own timeout)."""
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True)


def assert_clean(server: ServerProcess) -> None:
    assert "Traceback" not in server.output, server.output


def wait_for_output(server: ServerProcess, text: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.output:
        assert time.monotonic() < deadline, f"{text!r} not in server output:\n{server.output}"
        time.sleep(0.02)


def ws(server: ServerProcess, path: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    conn: ClientConnection = connect(server.url(path), **kwargs)
    return conn


def check_reason(reason: str) -> str:
    assert len(reason.encode()) <= 123, reason
    return reason


def closed(conn: ClientConnection) -> tuple[int, str]:
    """Receive until the server closes; the code and reason of its close frame (1006 if none)."""
    for _ in range(100):
        try:
            conn.recv(timeout=TIMEOUT)
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                return 1006, ""
            return exc.rcvd.code, check_reason(exc.rcvd.reason)
    raise AssertionError("the server did not close")


def rejected(server: ServerProcess, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    """The HTTP status, headers and body of a refused handshake."""
    with pytest.raises(InvalidStatus) as info, ws(server, path, **kwargs):
        pass
    response = info.value.response
    return response.status_code, {k.lower(): v for k, v in response.headers.raw_items()}, bytes(response.body)


def echo_works(server: ServerProcess, path: str = "/ws", reply: str = "Message text was: still here") -> None:
    """The server still serves a fresh connection (after whatever a test did to another one)."""
    with ws(server, path) as conn:
        conn.send("still here")
        assert conn.recv(timeout=TIMEOUT) == reply


class Raw:
    """A blocking raw-socket WebSocket client that sends whatever it is told to."""

    def __init__(self, server: ServerProcess, path: str, *headers: str, key: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            *(("Sec-WebSocket-Version: 13",) if not any("Version" in h for h in headers) else ()),
            *((f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",) if key else ()),
            *headers,
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.head = self.read_head()

    @classmethod
    def upgraded(cls, server: ServerProcess, path: str) -> Raw:
        raw = cls(server, path)
        assert raw.head.startswith("HTTP/1.1 101"), raw.head
        return raw

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def read_head(self) -> str:
        for _ in range(100):
            if b"\r\n\r\n" in self.buf:
                head, _, self.buf = self.buf.partition(b"\r\n\r\n")
                return head.decode("latin-1")
            self._fill()
        raise AssertionError("no response head")

    def read_exact(self, n: int) -> bytes:
        for _ in range(10_000):
            if len(self.buf) >= n:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            self._fill()
        raise AssertionError("short read")

    def read_frame(self) -> tuple[int, bytes]:
        """``(opcode, payload)`` of the next frame from the server (which never masks)."""
        b0, b1 = self.read_exact(2)
        assert not b1 & 0x80, "a server must not mask its frames"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.read_exact(8))
        return b0 & 0x0F, self.read_exact(n)

    def read_close(self) -> tuple[int, str] | None:
        """The next frame, which must be a close frame; ``None`` when the server just hung up."""
        try:
            opcode, payload = self.read_frame()
        except (EOFError, ConnectionResetError):
            return None
        assert opcode == 8, (opcode, payload)
        (code,) = struct.unpack("!H", payload[:2])
        return code, check_reason(payload[2:].decode())

    def read_to_eof(self, timeout: float = 3.0) -> bytes:
        self.sock.settimeout(timeout)
        out, self.buf = self.buf, b""
        try:
            while data := self.sock.recv(65536):
                out += data
        except ConnectionResetError:
            pass
        return out

    def send(self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> None:
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        bit = 0x80 if mask else 0
        if n < 126:
            head += bytes([bit | n])
        elif n < 65536:
            head += bytes([bit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([bit | 127]) + struct.pack("!Q", n)
        if mask:
            key = os.urandom(4)
            head += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + payload)

    def reset(self) -> None:
        """Vanish: RST instead of a close frame or FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def http_request(server: ServerProcess, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


kinds = pytest.mark.parametrize("kind", KINDS)


# --------------------------------------------------------------------------- the seed's examples


@kinds
async def test_basic_echo_unicode_fragments_and_ping(serve: Get, kind: str) -> None:
    server = serve(kind, "basic")

    def scenario() -> None:
        with ws(server, "/ws") as conn:
            for text in ("hello", "héllo ✓ 🎉", "", "x" * 70_000):
                conn.send(text)
                assert conn.recv(timeout=TIMEOUT) == f"Message text was: {text}"
            conn.send(["frag", "men", "ted"])  # one message in three frames
            assert conn.recv(timeout=TIMEOUT) == "Message text was: fragmented"
            assert conn.ping(b"are you there").wait(TIMEOUT)
            conn.close(1000, "done")
            assert (conn.close_code, conn.close_reason) == (1000, "done")  # the server echoes

    await run(scenario)
    await run(wait_for_output, server, "Client disconnected")
    assert_clean(server)


@kinds
async def test_path_params(serve: Get, kind: str) -> None:
    server = serve(kind, "path_params")

    def scenario() -> None:
        for path in ("/ws/42", "/ws/%34%32"):
            with ws(server, path) as conn:
                conn.send("hi")
                assert conn.recv(timeout=TIMEOUT) == "Client 42: hi"
        # Not an int: refused before accept (the app closes with 1008, the wire says 403).
        assert rejected(server, "/ws/abc")[0] == 403
        assert rejected(server, "/ws/4.5")[0] == 403
        assert rejected(server, "/ws/1/2")[0] == 404  # no route

    await run(scenario)
    await run(wait_for_output, server, "Client 42 disconnected")
    assert_clean(server)


@kinds
async def test_dependencies_bearer_token(serve: Get, kind: str) -> None:
    server = serve(kind, "dependencies")

    def scenario() -> None:
        with ws(server, "/ws", additional_headers={"Authorization": "Bearer valid-token"}) as conn:
            assert conn.recv(timeout=TIMEOUT) == "Authenticated with token: valid-token"
            conn.send("ping")
            assert conn.recv(timeout=TIMEOUT) == "Echo: ping"
        # A wrong token: HTTP 401 on the wire with the JSON detail, not a close after accept.
        status, headers, body = rejected(server, "/ws", additional_headers={"Authorization": "Bearer wrong"})
        assert (status, json.loads(body)) == (401, {"detail": "Invalid token"})
        assert headers["content-type"] == "application/json"
        for extra in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}):
            status, headers, body = rejected(server, "/ws", additional_headers=extra)
            assert status in (401, 403)
            assert json.loads(body) == {"detail": "Not authenticated"}
            if status == 401:
                assert headers["www-authenticate"] == "Bearer"

    await run(scenario)
    assert_clean(server)


@kinds
async def test_json_messages(serve: Get, kind: str) -> None:
    server = serve(kind, "json_messages")

    def scenario() -> tuple[int, str]:
        with ws(server, "/ws/json") as conn:
            conn.send('{"msg": "héllo ✓", "n": [1, 2.5, null, true]}')
            # Compact JSON, non-ASCII kept as is.
            assert conn.recv(timeout=TIMEOUT) == (
                '{"type":"response","original_message":{"msg":"héllo ✓","n":[1,2.5,null,true]},'
                '"timestamp":"2023-01-01T00:00:00Z"}'
            )
            conn.send("{broken")
            return closed(conn)

    code, reason = await run(scenario)
    assert code == 1007
    assert reason.startswith("invalid JSON")
    assert_clean(server)


@kinds
async def test_connection_manager_survives_a_client_that_resets(serve: Get, kind: str) -> None:
    server = serve(kind, "connection_manager")

    def scenario() -> None:
        with ws(server, "/ws/1") as one, ws(server, "/ws/2") as two:
            one.send("hi")
            assert one.recv(timeout=TIMEOUT) == "You wrote: hi"
            assert one.recv(timeout=TIMEOUT) == "Client #1 says: hi"
            assert two.recv(timeout=TIMEOUT) == "Client #1 says: hi"
            # Client 3 joins and vanishes with a TCP reset: the others hear that it left.
            three = Raw.upgraded(server, "/ws/3")
            two.send("three?")
            assert two.recv(timeout=TIMEOUT) == "You wrote: three?"
            for conn in (one, two):
                assert conn.recv(timeout=TIMEOUT) == "Client #2 says: three?"
            # Only once the broadcast has reached client 3: had it not, the seed's handler 2
            # would take the failed send to 3 for its own disconnect ("Client #2 left").
            assert three.read_frame() == (1, b"Client #2 says: three?")
            three.reset()
            for conn in (one, two):
                assert conn.recv(timeout=TIMEOUT) == "Client #3 left the chat"
            two.close()
            assert one.recv(timeout=TIMEOUT) == "Client #2 left the chat"

    await run(scenario)
    assert_clean(server)


@kinds
async def test_query_params(serve: Get, kind: str) -> None:
    server = serve(kind, "query_params")

    def scenario() -> None:
        with ws(server, "/ws?room=lobby&user_id=7") as conn:
            assert conn.recv(timeout=TIMEOUT) == "Welcome to room lobby, user 7!"
            conn.send("yo")
            assert conn.recv(timeout=TIMEOUT) == "[lobby] User 7: yo"
        with ws(server, "/ws?room=caf%C3%A9%20bar&user_id=-3") as conn:
            assert conn.recv(timeout=TIMEOUT) == "Welcome to room café bar, user -3!"
        for query in ("room=lobby", "user_id=7", "room=lobby&user_id=x", ""):
            assert rejected(server, f"/ws?{query}")[0] == 403, query

    await run(scenario)
    await run(wait_for_output, server, "User 7 left room lobby")
    assert_clean(server)


@kinds
async def test_error_handling(serve: Get, kind: str) -> None:
    server = serve(kind, "error_handling")

    def scenario() -> None:
        with ws(server, "/ws/safe") as conn:
            for sent, expected in [
                ("{nope", {"error": "Invalid JSON format"}),
                ('{"data": 1}', {"error": "Missing 'action' field"}),
                ('{"action": "go"}', {"success": True, "action": "go", "data": None}),
                (
                    '{"action": "é", "data": [1, {"k": "v"}]}',
                    {"success": True, "action": "é", "data": [1, {"k": "v"}]},
                ),
                # The seed's catch-all: ``"action" not in 1`` is a TypeError.
                ("1", {"error": "Processing error: argument of type 'int' is not iterable"}),
            ]:
                conn.send(sent)
                assert json.loads(conn.recv(timeout=TIMEOUT)) == expected
            # receive_text() of a binary frame raises a WebSocketException (str: "code: reason",
            # as Starlette's), caught by the seed's ``except Exception`` like any other error.
            conn.send(b"bytes")
            assert json.loads(conn.recv(timeout=TIMEOUT)) == {
                "error": "Processing error: 1003: expected a text message, got binary"
            }

    await run(scenario)
    await run(wait_for_output, server, "Client disconnected from safe WebSocket")
    assert_clean(server)


@kinds
async def test_custom_close_from_the_server(serve: Get, kind: str) -> None:
    server = serve(kind, "custom_close")

    def scenario(command: str) -> tuple[int, str]:
        with ws(server, "/ws/custom-close") as conn:
            conn.send("x")
            assert conn.recv(timeout=TIMEOUT) == "Received: x"
            conn.send(command)
            return closed(conn)

    assert await run(scenario, "close") == (1000, "Client requested close")
    assert await run(scenario, "error") == (1011, "Server error occurred")
    assert_clean(server)


@kinds
async def test_frames_sent_after_the_server_closed_are_ignored(serve: Get, kind: str) -> None:
    server = serve(kind, "custom_close")

    def scenario() -> None:
        raw = Raw.upgraded(server, "/ws/custom-close")
        raw.send(1, b"close")
        assert raw.read_close() == (1000, "Client requested close")
        # hypercorn may already have closed the TCP connection (the sends fail): also fine.
        with suppress(OSError):
            raw.send(1, b"late text")
            raw.send(2, b"late binary")
            raw.send(8, struct.pack("!H", 1000))
        # Nothing but the end of the stream follows the close frame.
        assert raw.read_to_eof() == b""
        raw.close()
        # A client that never answers the close and keeps talking, then hangs up.
        raw = Raw.upgraded(server, "/ws/custom-close")
        raw.send(1, b"error")
        assert raw.read_close() == (1011, "Server error occurred")
        with suppress(OSError):
            raw.send(1, b"are you still there?")
        raw.close()
        echo_works(server, "/ws/custom-close", "Received: still here")

    await run(scenario)
    assert_clean(server)


def _late_ping(server: ServerProcess) -> bytes:
    raw = Raw.upgraded(server, "/ws/custom-close")
    raw.send(1, b"close")
    assert raw.read_close() == (1000, "Client requested close")
    with suppress(OSError):
        raw.send(9, b"late ping")  # before the client has answered the close
    rest = raw.read_to_eof()
    raw.close()
    echo_works(server, "/ws/custom-close", "Received: still here")
    return rest


@kinds
async def test_a_ping_after_the_server_closed_is_ignored(serve: Get, kind: str) -> None:
    server = serve(kind, "custom_close", PURPOSE="late-ping")
    assert await run(_late_ping, server) == b""  # no pong after a close frame (RFC 6455 5.5.1)
    await run(time.sleep, 0.2)
    assert_clean(server)


@kinds
async def test_routes_router_and_url_path_for(serve: Get, kind: str) -> None:
    server = serve(kind, "routes")

    def scenario() -> None:
        with ws(server, "/v1/rooms/blue") as conn:
            assert json.loads(conn.recv(timeout=TIMEOUT)) == {"room": "blue", "url": "/v1/rooms/blue"}
            conn.send("hi")
            assert conn.recv(timeout=TIMEOUT) == "blue: hi"
        with ws(server, "/status") as conn:
            assert conn.recv(timeout=TIMEOUT) == "ok"
            assert closed(conn) == (1000, "")  # the handler returned: trioapi closes with 1000
        for path in ("/nowhere", "/rooms/blue", "/v1/rooms", "/v1/rooms/blue/x"):
            assert rejected(server, path)[0] == 404, path

    await run(scenario)
    assert_clean(server)


# --------------------------------------------------------------------------- the other examples


def chat_event(conn: ClientConnection, timeout: float = TIMEOUT) -> Any:
    """The chat's next event, skipping the "presence" updates (the list of who is in the room)."""
    for _ in range(10):
        event = json.loads(conn.recv(timeout=timeout))
        if event["type"] != "presence":
            return event
    raise AssertionError("only presence updates")


@kinds
async def test_chat_rooms(serve: Get, kind: str) -> None:
    server = serve(kind, "chat")

    def scenario() -> None:
        with ws(server, "/ws/lobby/alice") as alice:
            assert chat_event(alice) == {"type": "joined", "client": "alice"}
            with ws(server, "/ws/lobby/bob") as bob, ws(server, "/ws/other/carol") as carol:
                joined = {"type": "joined", "client": "bob"}
                assert chat_event(bob) == joined
                assert chat_event(alice) == joined
                assert chat_event(carol) == {"type": "joined", "client": "carol"}
                alice.send("hi ünïcode")
                said = {"type": "message", "client": "alice", "text": "hi ünïcode"}
                assert chat_event(alice) == said
                assert chat_event(bob) == said
                with pytest.raises(TimeoutError):
                    chat_event(carol, timeout=0.2)  # another room
            assert chat_event(alice) == {"type": "left", "client": "bob"}

    await run(scenario)
    assert_clean(server)


async def test_chat_http_side_on_hypercorn(serve: Get) -> None:
    server = serve("hypercorn", "chat")

    def scenario() -> None:
        status, headers, body = http_request(server, "GET", "/?room=lobby")
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert b"<title>trioapi chat</title>" in body
        assert b"new WebSocket(" in body
        status, headers, body = http_request(server, "GET", "/nope")
        assert (status, headers["content-type"], json.loads(body)) == (
            404,
            "application/json",
            {"detail": "Not Found"},
        )
        status, headers, body = http_request(server, "POST", "/")
        assert (status, json.loads(body)) == (405, {"detail": "Method Not Allowed"})
        # A plain GET on the WebSocket path is not a route for HTTP.
        status, headers, body = http_request(server, "GET", "/ws/lobby/alice")
        assert (status, json.loads(body)) == (404, {"detail": "Not Found"})

    await run(scenario)
    assert_clean(server)


async def test_plain_http_on_the_native_transport_gets_426(serve: Get) -> None:
    # The native transport speaks WebSocket only: every plain HTTP request, the chat
    # page included, is answered 426 Upgrade Required (by design, SPEC 5 / issue 4).
    server = serve("native", "chat")

    def scenario() -> None:
        for method, path in (("GET", "/"), ("GET", "/ws/lobby/alice"), ("POST", "/nope")):
            status, headers, body = http_request(server, method, path)
            assert (status, headers["upgrade"]) == (426, "websocket")
            assert body == b"This server only speaks WebSocket (RFC 6455)\n"

    await run(scenario)
    assert_clean(server)


@kinds
async def test_ticker_pushes_ticks(serve: Get, kind: str) -> None:
    server = serve(kind, "ticker", TICK_SECONDS="0.05")

    def scenario() -> None:
        with ws(server, "/ticks") as conn:
            ticks = [json.loads(conn.recv(timeout=TIMEOUT))["tick"] for _ in range(3)]
            assert ticks == [ticks[0], ticks[0] + 1, ticks[0] + 2]
            assert conn.ping(b"idle?").wait(TIMEOUT)
            conn.close(4000, "enough")
            assert (conn.close_code, conn.close_reason) == (4000, "enough")
        with ws(server, "/ticks") as conn:  # still ticking for the next client
            assert "tick" in json.loads(conn.recv(timeout=TIMEOUT))

    await run(scenario)
    assert_clean(server)


@kinds
async def test_auth_query(serve: Get, kind: str) -> None:
    server = serve(kind, "auth_query")

    def scenario() -> None:
        with ws(server, "/ws?token=s3cret") as conn:
            assert conn.recv(timeout=TIMEOUT) == "Hello, alice!"
            conn.send("hi")
            assert conn.recv(timeout=TIMEOUT) == "alice: hi"
        status, headers, body = rejected(server, "/ws?token=nope")
        assert (status, headers["www-authenticate"], json.loads(body)) == (
            401,
            "APIKey",
            {"detail": "Invalid token"},
        )
        status, _, body = rejected(server, "/ws")
        assert (status, json.loads(body)) == (401, {"detail": "Not authenticated"})

    await run(scenario)
    assert_clean(server)


@kinds
async def test_auth_header_or_query(serve: Get, kind: str) -> None:
    server = serve(kind, "auth_header_or_query")

    def scenario() -> None:
        for path, headers in (("/events", {"X-API-Key": "k-123"}), ("/events?api_key=k-123", {})):
            with ws(server, path, additional_headers=headers) as conn:
                assert json.loads(conn.recv(timeout=TIMEOUT)) == {"subscribed": "billing-service"}
                assert closed(conn) == (1000, "")
        for path, headers in (("/events", {}), ("/events?api_key=bad", {"X-API-Key": "bad"})):
            status, _, body = rejected(server, path, additional_headers=headers)
            assert status in (401, 403)
            assert json.loads(body) == {"detail": "Not authenticated"}

    await run(scenario)
    assert_clean(server)


@kinds
async def test_auth_cookie_and_a_foreign_origin(serve: Get, kind: str) -> None:
    server = serve(kind, "auth_cookie")
    cookie = {"Cookie": "session=abc123"}

    def scenario() -> None:
        # Cross-site WebSocket hijacking: a valid cookie from another site's page is refused
        # with 403 before any dependency runs.
        for origin in (
            "https://evil.example",
            "null",
            "http://chat.example.com",
            "https://chat.example.com.evil",
        ):
            status, _, body = rejected(server, "/ws", additional_headers=cookie, origin=origin)
            assert (status, body) == (403, b""), origin
        allowed: tuple[str | None, ...] = ("https://chat.example.com", "https://CHAT.example.com:443", None)
        for allowed_origin in allowed:  # no Origin at all: not a browser, so no ambient cookie risk
            with ws(server, "/ws", additional_headers=cookie, origin=allowed_origin) as conn:
                assert json.loads(conn.recv(timeout=TIMEOUT)) == {"user": "alice", "unread": 3}
                assert closed(conn) == (1000, "")
        status, headers, body = rejected(
            server, "/ws", additional_headers={"Cookie": "session=old"}, origin="https://chat.example.com"
        )
        assert (status, headers["www-authenticate"], json.loads(body)) == (
            401,
            "APIKey",
            {"detail": "Session expired"},
        )
        status, _, body = rejected(server, "/ws", origin="https://chat.example.com")
        assert (status, json.loads(body)) == (401, {"detail": "Not authenticated"})

    await run(scenario)
    assert_clean(server)


@kinds
async def test_auth_subprotocol(serve: Get, kind: str) -> None:
    server = serve(kind, "auth_subprotocol")

    def scenario() -> None:
        with ws(server, "/ws", subprotocols=["chat.v1", "access_token.t0ken"]) as conn:
            assert conn.subprotocol == "chat.v1"  # never the token
            assert conn.recv(timeout=TIMEOUT) == "Hello, alice!"
            assert closed(conn) == (1000, "")
        status, _, body = rejected(server, "/ws", subprotocols=["chat.v1", "access_token.bad"])
        assert (status, json.loads(body)) == (401, {"detail": "Invalid token"})
        for offered in (["chat.v1"], None):
            status, _, body = rejected(server, "/ws", subprotocols=offered)
            assert (status, json.loads(body)) == (401, {"detail": "Not authenticated"})

    await run(scenario)
    assert_clean(server)


@kinds
async def test_auth_subprotocol_token_without_the_app_protocol(serve: Get, kind: str) -> None:
    server = serve(kind, "auth_subprotocol", PURPOSE="token-only")

    def scenario() -> int:
        return rejected(server, "/ws", subprotocols=["access_token.t0ken"])[0]

    status = await run(scenario)
    assert 400 <= status < 500, status
    assert_clean(server)


# --------------------------------------------------------------------------- handshake edge cases


@kinds
async def test_a_handshake_without_a_key_is_a_400(serve: Get, kind: str) -> None:
    server = serve(kind, "basic")

    def scenario() -> None:
        raw = Raw(server, "/ws", key=False)
        assert raw.head.startswith("HTTP/1.1 400"), raw.head
        raw.close()
        raw = Raw(server, "/ws", "Sec-WebSocket-Version: 8")
        if kind != "hypercorn":
            # RFC 6455 4.4: 426 with the versions the server speaks.
            assert raw.head.startswith("HTTP/1.1 426"), raw.head
            assert "Sec-WebSocket-Version: 13" in raw.head
        else:
            assert raw.head.startswith("HTTP/1.1 400"), raw.head  # hypercorn's (h11/wsproto) answer
        raw.close()
        echo_works(server)

    await run(scenario)
    assert_clean(server)


@kinds
async def test_plain_http_get_to_a_websocket_path(serve: Get, kind: str) -> None:
    server = serve(kind, "basic")

    def scenario() -> tuple[int, dict[str, str], bytes]:
        return http_request(server, "GET", "/ws")

    status, headers, body = await run(scenario)
    if kind != "hypercorn":  # trioapi's own servers serve WebSockets only
        assert (status, headers["upgrade"]) == (426, "websocket")
    else:
        # hypercorn hands plain HTTP to the app, which has no HTTP route there.
        assert (status, headers["content-type"], json.loads(body)) == (
            404,
            "application/json",
            {"detail": "Not Found"},
        )
    assert_clean(server)


@kinds
async def test_pings_while_idle_and_inside_a_fragmented_message(serve: Get, kind: str) -> None:
    server = serve(kind, "basic")

    def scenario() -> None:
        raw = Raw.upgraded(server, "/ws")
        raw.send(9, b"idle ping")
        assert raw.read_frame() == (10, b"idle ping")
        raw.send(1, "hé".encode(), fin=False)
        raw.send(9, b"mid")  # control frames may come between fragments
        raw.send(0, "llo wörld".encode(), fin=True)
        assert raw.read_frame() == (10, b"mid")
        assert raw.read_frame() == (1, "Message text was: héllo wörld".encode())
        raw.send(8, struct.pack("!H", 1000))
        assert raw.read_close() == (1000, "")
        raw.close()

    await run(scenario)
    assert_clean(server)


@kinds
async def test_an_abrupt_tcp_reset_is_a_normal_disconnect(serve: Get, kind: str) -> None:
    server = serve(kind, "custom_close")

    def scenario() -> None:
        raw = Raw.upgraded(server, "/ws/custom-close")
        raw.send(1, b"x")
        assert raw.read_frame() == (1, b"Received: x")
        raw.send(1, b"half a mess", fin=False)
        raw.reset()
        # The handler sees WebSocketDisconnect(1006) on both servers.
        wait_for_output(server, "WebSocket disconnected with code: 1006")
        echo_works(server, "/ws/custom-close", "Received: still here")

    await run(scenario)
    assert_clean(server)


@kinds
async def test_protocol_errors_end_the_connection_and_nothing_else(serve: Get, kind: str) -> None:
    # Hypercorn does not send the 1002 close frame RFC 6455 suggests for these (wsproto
    # reports the error, hypercorn drops the connection); the native transport sends it
    # (and 1007 for the bad close reason). Accept either; what matters is that nothing is
    # delivered, the server survives and logs no traceback.
    server = serve(kind, "basic")

    def scenario() -> None:
        for opcode, payload, mask in (
            (1, b"unmasked", False),
            (3, b"reserved opcode", True),
            (0, b"continuation of nothing", True),
            (8, struct.pack("!H", 999), True),  # an invalid close code
            (8, struct.pack("!H", 4000) + b"\xff bad reason", True),  # a close reason that is not UTF-8
        ):
            raw = Raw.upgraded(server, "/ws")
            raw.send(opcode, payload, mask=mask)
            assert raw.read_close() in (None, (1002, ""), (1007, ""))
            raw.close()
        echo_works(server)

    await run(scenario)
    assert_clean(server)


def _invalid_utf8(server: ServerProcess) -> tuple[int, str] | None:
    raw = Raw.upgraded(server, "/ws")
    raw.send(1, b"caf\xc3")  # a truncated UTF-8 sequence in a text frame
    try:
        return raw.read_close()
    finally:
        raw.close()


@kinds
async def test_invalid_utf8_in_a_text_frame_never_reaches_the_app(serve: Get, kind: str) -> None:
    server = serve(kind, "basic")
    # No echo frame (read_close insists on a close frame or the end), then see the xfail below.
    assert await run(_invalid_utf8, server) in (None, (1007, ""))
    await run(echo_works, server)
    assert_clean(server)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            "hypercorn",
            marks=pytest.mark.xfail(
                strict=True,
                reason="SPEC 8 says invalid UTF-8 -> close 1007, but hypercorn drops the TCP connection "
                "without any close frame (the client sees 1006): wsproto reports the error as a "
                "CloseConnection event and hypercorn does not send it; frames never reach the app",
            ),
        ),
        "native",
    ],
)
async def test_invalid_utf8_in_a_text_frame_closes_with_1007(serve: Get, kind: str) -> None:
    server = serve(kind, "basic")
    result = await run(_invalid_utf8, server)
    assert result is not None
    assert result[0] == 1007


# --------------------------------------------------------------------------- limits and crashes


@kinds
async def test_a_message_over_the_default_limit_closes_with_1009(serve: Get, kind: str) -> None:
    server = serve(kind, "basic")
    limit = LIMIT[kind]

    def scenario() -> tuple[int, str]:
        with ws(server, "/ws", max_size=None) as conn:
            conn.send("x" * limit)  # exactly the limit is fine
            assert len(conn.recv(timeout=TIMEOUT)) == limit + len("Message text was: ")
            conn.send("x" * (limit + 1))
            return closed(conn)

    code, _ = await run(scenario)
    assert code == 1009
    await run(echo_works, server)
    assert_clean(server)


def _far_oversized(server: ServerProcess, size: int, attempts: int) -> list[int]:
    codes = []
    for _ in range(attempts):
        with ws(server, "/ws", max_size=None) as conn:
            with suppress(ConnectionClosed):
                conn.send("x" * size)
            codes.append(closed(conn)[0])
    return codes


async def test_a_far_oversized_message_closes_with_1009_on_hypercorn(serve: Get) -> None:
    server = serve("hypercorn", "basic")
    assert await run(_far_oversized, server, 2 * LIMIT["hypercorn"], 2) == [1009, 1009]
    assert_clean(server)


async def test_a_far_oversized_message_closes_with_1009_on_native(serve: Get) -> None:
    server = serve("native", "basic")
    # A race with the kernel: each attempt loses the 1009 about 4 times in 5; eight make sure.
    assert await run(_far_oversized, server, 8 * LIMIT["native"], 8) == [1009] * 8


#: Valid JSON syntax that Python's json module cannot turn into an object the handler can use.
HOSTILE_JSON = {
    "huge integer": "1" * 5000,  # ValueError: int max str digits
    "deep nesting": "[" * 100_000 + "]" * 100_000,  # RecursionError
    "lone surrogate": '"\\ud800"',  # decodes, but cannot be sent back as UTF-8
}


def _hostile(server: ServerProcess) -> dict[str, tuple[int, str]]:
    results = {}
    for name, text in HOSTILE_JSON.items():
        with ws(server, "/ws/json") as conn:
            conn.send(text)
            results[name] = closed(conn)
    return results


@kinds
async def test_crashes_in_json_messages_leak_no_detail(serve: Get, kind: str) -> None:
    server = serve(kind, "json_messages", PURPOSE="crash")
    for name, (code, reason) in (await run(_hostile, server)).items():
        assert code in (1007, 1011), name
        if code == 1011:
            # SPEC 4: a crash gives 1011 with nothing internal in the reason.
            assert reason == "Internal Server Error", (name, reason)
        else:
            assert reason.startswith("invalid"), (name, reason)

    def still_serving() -> None:
        with ws(server, "/ws/json") as conn:
            conn.send("[]")
            assert json.loads(conn.recv(timeout=TIMEOUT))["original_message"] == []

    await run(still_serving)


@kinds
async def test_hostile_json_is_invalid_data_not_a_crash(serve: Get, kind: str) -> None:
    server = serve(kind, "json_messages", PURPOSE="hostile")
    results = await run(_hostile, server)
    assert {name: code for name, (code, _) in results.items()} == dict.fromkeys(HOSTILE_JSON, 1007)
    assert_clean(server)


# --------------------------------------------------------------------------- with trio-websocket's client

TrioWebSocketScenario = Callable[[ServerProcess], Awaitable[None]]


async def _tw_rejected(url: str, **kwargs: Any) -> trio_websocket.ConnectionRejected:
    with pytest.raises(trio_websocket.ConnectionRejected) as info:
        async with trio_websocket.open_websocket_url(url, **kwargs):
            pass
    return info.value


async def _tw_closed(connection: trio_websocket.WebSocketConnection) -> tuple[int, str | None]:
    with pytest.raises(trio_websocket.ConnectionClosed) as info:
        await connection.get_message()
    reason = info.value.reason
    assert reason is not None
    return reason.code, reason.reason


async def _tw_basic(server: ServerProcess) -> None:
    async with trio_websocket.open_websocket_url(server.url("/ws")) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "Message text was: hello"


async def _tw_path_params(server: ServerProcess) -> None:
    async with trio_websocket.open_websocket_url(server.url("/ws/42")) as ws:
        await ws.send_message("hi")
        assert await ws.get_message() == "Client 42: hi"
    assert (await _tw_rejected(server.url("/ws/abc"))).status_code == 403


async def _tw_dependencies(server: ServerProcess) -> None:
    good = [(b"authorization", b"Bearer valid-token")]
    async with trio_websocket.open_websocket_url(server.url("/ws"), extra_headers=good) as ws:
        assert await ws.get_message() == "Authenticated with token: valid-token"
        await ws.send_message("ping")
        assert await ws.get_message() == "Echo: ping"
    denied = await _tw_rejected(server.url("/ws"), extra_headers=[(b"authorization", b"Bearer wrong")])
    assert denied.status_code == 401
    assert json.loads(denied.body or b"{}") == {"detail": "Invalid token"}
    assert (await _tw_rejected(server.url("/ws"))).status_code in (401, 403)


async def _tw_json_messages(server: ServerProcess) -> None:
    async with trio_websocket.open_websocket_url(server.url("/ws/json")) as ws:
        await ws.send_message('{"n": 1}')
        reply = json.loads(await ws.get_message())
        assert reply["original_message"] == {"n": 1}
        await ws.send_message("{broken")
        assert (await _tw_closed(ws))[0] == 1007


async def _tw_connection_manager(server: ServerProcess) -> None:
    async with trio_websocket.open_websocket_url(server.url("/ws/1")) as one:
        async with trio_websocket.open_websocket_url(server.url("/ws/2")) as two:
            await one.send_message("hi")
            assert await one.get_message() == "You wrote: hi"
            assert await one.get_message() == "Client #1 says: hi"
            assert await two.get_message() == "Client #1 says: hi"
        assert await one.get_message() == "Client #2 left the chat"


async def _tw_query_params(server: ServerProcess) -> None:
    async with trio_websocket.open_websocket_url(server.url("/ws?room=lobby&user_id=7")) as ws:
        assert await ws.get_message() == "Welcome to room lobby, user 7!"
        await ws.send_message("yo")
        assert await ws.get_message() == "[lobby] User 7: yo"
    assert (await _tw_rejected(server.url("/ws?room=lobby"))).status_code == 403
    assert (await _tw_rejected(server.url("/ws?room=lobby&user_id=x"))).status_code == 403


async def _tw_error_handling(server: ServerProcess) -> None:
    async with trio_websocket.open_websocket_url(server.url("/ws/safe")) as ws:
        await ws.send_message("{nope")
        assert json.loads(await ws.get_message()) == {"error": "Invalid JSON format"}
        await ws.send_message('{"action": "go"}')
        assert json.loads(await ws.get_message()) == {"success": True, "action": "go", "data": None}


async def _tw_custom_close(server: ServerProcess) -> None:
    for command, code, reason in [
        ("close", 1000, "Client requested close"),
        ("error", 1011, "Server error occurred"),
    ]:
        async with trio_websocket.open_websocket_url(server.url("/ws/custom-close")) as ws:
            await ws.send_message("x")
            assert await ws.get_message() == "Received: x"
            await ws.send_message(command)
            assert await _tw_closed(ws) == (code, reason)


async def _tw_routes(server: ServerProcess) -> None:
    async with trio_websocket.open_websocket_url(server.url("/v1/rooms/blue")) as ws:
        assert json.loads(await ws.get_message()) == {"room": "blue", "url": "/v1/rooms/blue"}
    assert (await _tw_rejected(server.url("/nowhere"))).status_code == 404


#: Each seed example with trio-websocket's client: (scenario, the server's environment).
TRIO_WEBSOCKET_SCENARIOS: dict[str, tuple[TrioWebSocketScenario, dict[str, str]]] = {
    "basic": (_tw_basic, {}),
    "path_params": (_tw_path_params, {}),
    "dependencies": (_tw_dependencies, {}),
    "json_messages": (_tw_json_messages, {}),
    "connection_manager": (_tw_connection_manager, {"PURPOSE": "trio-websocket-client"}),
    "query_params": (_tw_query_params, {}),
    "error_handling": (_tw_error_handling, {}),
    "custom_close": (_tw_custom_close, {}),
    "routes": (_tw_routes, {}),
}


@kinds
@pytest.mark.parametrize("example", sorted(TRIO_WEBSOCKET_SCENARIOS))
async def test_a_seed_example_with_trio_websockets_client(serve: Get, kind: str, example: str) -> None:
    scenario, env = TRIO_WEBSOCKET_SCENARIOS[example]
    server = serve(kind, example, **env)
    finished = False
    with trio.fail_after(20):
        try:
            await scenario(server)
            finished = True
        finally:
            # trio-websocket's client can leak its reader's Cancelled (python-trio/trio-websocket#184),
            # which pytest-trio would swallow along with the rest of the scenario.
            assert finished, "the scenario did not run to its end"
    assert_clean(server)
