"""Test an app in memory: no sockets, no threads, fine under pytest-trio's ``autojump_clock``.

::

    async with TestClient(app) as client:            # runs the lifespan
        async with client.websocket_connect("/ws") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "Message text was: hi"
        response = await client.get("/health")

The app talks ASGI to the client exactly as it would to hypercorn, including
the denial-response extension, so rejections look the same as on the wire.
Exceptions raised inside the app are re-raised into the test (switch off with
``raise_server_exceptions=False`` to see what a client would see instead).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from http.cookies import CookieError, SimpleCookie
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import attrs
import trio
import trio.testing

from trioapi._errors import is_cancellation, single_error
from trioapi._lifespan import LifespanDriver
from trioapi._types import ASGIApp, Message, Scope
from trioapi.datastructures import Headers
from trioapi.exceptions import LifespanError
from trioapi.websockets import WebSocketDisconnect

__all__ = [
    "LifespanError",
    "TestClient",
    "TestResponse",
    "WebSocketDenialResponse",
    "WebSocketRejected",
    "WebSocketTestSession",
]

#: An in-memory peer never blocks the app, like a real client with a fast link.
_UNBOUNDED = math.inf

#: How long (seconds, on Trio's clock) ``websocket_connect`` waits for the app to
#: settle after the handshake before going on anyway (an app whose tasks never
#: all wait, such as a busy loop of checkpoints, never settles).
SETTLE_LIMIT = 1.0


async def _settle() -> None:
    """Let the app run until every task waits (for a message, a timer, I/O), within ``SETTLE_LIMIT``.

    Trio's ``wait_all_tasks_blocked`` wakes before the autojump clock's own
    waiter, so under ``autojump_clock`` the app settles before virtual time moves.
    """
    with trio.move_on_after(SETTLE_LIMIT):
        await trio.testing.wait_all_tasks_blocked()


class WebSocketRejected(WebSocketDisconnect):
    """The app refused the handshake.

    ``status_code`` is what a client sees on the wire: 403 when the app closed
    before accepting, else the denial response's status, with its ``headers``
    and ``body``. When the app closed rather than sent a response, ``code`` and
    ``reason`` are its close frame's (which a real server cannot show to the
    client); after a denial response ``code`` is 1006, the code a browser
    reports for a failed handshake.

    It is a ``WebSocketDisconnect``, so tests written for Starlette's test
    client, which raises that on a refused handshake, keep working.
    """

    def __init__(
        self,
        status_code: int,
        *,
        code: int = 1006,
        reason: str = "",
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(code, reason)
        self.status_code = status_code
        self.headers = headers if headers is not None else Headers()
        self.body = body

    @property
    def content(self) -> bytes:
        """The denial body (the name Starlette's test client uses)."""
        return self.body

    @property
    def text(self) -> str:
        """The denial body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The denial body parsed as JSON."""
        return json.loads(self.body)

    def __str__(self) -> str:
        if self.body or self.status_code != 403:
            return f"handshake refused with HTTP {self.status_code}: {self.body[:200]!r}"
        return f"handshake refused: close {self.code} {self.reason!r} (HTTP {self.status_code} on the wire)"


class WebSocketDenialResponse(WebSocketRejected):
    """The app refused the handshake with an HTTP response (a denial), not with a close.

    Starlette's test client has an exception of this name for the same case,
    with the same ``status_code``, ``headers``, ``content``, ``text`` and ``json()``.
    """


@attrs.frozen
class TestResponse:
    """The result of an HTTP request made with the test client."""

    __test__ = False  # not a pytest test class

    status_code: int
    headers: Headers
    content: bytes

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.content)


def _split_target(path: str, params: Mapping[str, Any] | None) -> tuple[str, bytes]:
    parts = urlsplit(path)
    query = parts.query
    if params:
        query = "&".join(filter(None, [query, urlencode(params, doseq=True)]))
    return parts.path or "/", query.encode("latin-1")


def _raw_headers(headers: Mapping[str, str] | Sequence[tuple[str, str]] | None) -> list[tuple[bytes, bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]


class WebSocketTestSession:
    """The client end of one in-memory WebSocket; made by ``TestClient.websocket_connect``."""

    __test__ = False

    def __init__(self, client: TestClient, scope: Scope, timeout: float) -> None:
        self._client = client
        self._scope = scope
        self._timeout = timeout
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](_UNBOUNDED)
        self._app_outbox, self._from_app = trio.open_memory_channel[Message](_UNBOUNDED)
        self._app_error: BaseException | None = None
        self._app_done = trio.Event()
        self._closed: tuple[int, str] | None = None
        # Messages taken off the channel by assert_no_message, for the next receive.
        self._held: deque[Message] = deque()
        self.accepted_subprotocol: str | None = None
        self.response_headers = Headers()

    async def _run_app(self) -> None:
        try:
            await self._client.app(self._scope, self._app_inbox.receive, self._app_outbox.send)
        except BaseException as exc:
            if is_cancellation(exc):  # also a nursery's group of Cancelled: never an app error
                raise
            self._app_error = single_error(exc)
        finally:
            self._app_done.set()
            self._app_outbox.close()

    async def _next_from_app(self) -> Message:
        if self._held:
            return self._held.popleft()
        with trio.fail_after(self._timeout):
            try:
                return await self._from_app.receive()
            except trio.EndOfChannel:
                self._raise_app_error()
                raise WebSocketDisconnect(1006, "the app ended without closing") from None

    def _raise_app_error(self) -> None:
        if self._app_error is not None and self._client.raise_server_exceptions:
            error, self._app_error = self._app_error, None
            raise error

    async def _handshake(self) -> None:
        await self._to_app.send({"type": "websocket.connect"})
        message = await self._next_from_app()
        kind = message["type"]
        if kind == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self.response_headers = Headers(raw=message.get("headers") or [])
            return
        if kind == "websocket.close":
            raise WebSocketRejected(403, code=message.get("code", 1000), reason=message.get("reason") or "")
        if kind == "websocket.http.response.start":
            body = b""
            while True:
                chunk = await self._next_from_app()
                body += chunk.get("body", b"")
                if not chunk.get("more_body", False):
                    break
            raise WebSocketDenialResponse(
                message["status"], headers=Headers(raw=message.get("headers") or []), body=body
            )
        raise RuntimeError(f"The app sent {kind!r} during the handshake")

    # -- sending -------------------------------------------------------------

    async def _send(self, message: Message) -> None:
        if self._closed is not None:
            raise RuntimeError("This test WebSocket is closed")
        await self._to_app.send(message)

    async def send_message(self, message: Message) -> None:
        """Send an ASGI message to the app as it is: ``websocket.receive`` (with ``text`` or
        ``bytes``), or ``websocket.disconnect``, which closes as ``close`` does."""
        if message["type"] == "websocket.disconnect":
            await self.close(message.get("code", 1000), message.get("reason") or "")
        else:
            await self._send(message)

    async def send_text(self, data: str) -> None:
        """Send a text frame to the app."""
        await self._send({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame to the app."""
        await self._send({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as JSON in a text (or ``"binary"``) frame."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "text":
            await self.send_text(text)
        else:
            await self.send_bytes(text.encode("utf-8"))

    # -- receiving -----------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message from the app; ``WebSocketDisconnect`` with the app's code once it closes.

        Fails with ``trio.TooSlowError`` after the client's ``timeout``, instead of hanging.
        """
        if self._closed is not None:
            raise WebSocketDisconnect(*self._closed)
        message = await self.receive_message()
        if message["type"] == "websocket.send":
            text: str | None = message.get("text")
            data: bytes = message.get("bytes") or b""
            return text if text is not None else data
        if message["type"] == "websocket.close":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")
        raise RuntimeError(f"Unexpected ASGI message from the app: {message['type']!r}")

    async def receive_message(self) -> Message:
        """The next ASGI message from the app as it is: ``websocket.send`` or ``websocket.close``.

        A close is answered as ``receive`` answers it. Bounded by the client's ``timeout``.
        """
        message = await self._next_from_app()
        if message["type"] == "websocket.close":
            self._answer_close(message)
        return message

    def _answer_close(self, message: Message) -> None:
        """Take the app's close frame: this end is closed now, and answers it (unless it closed first)."""
        if self._closed is not None:
            return
        self._closed = code, reason = (message.get("code", 1000), message.get("reason") or "")
        # A real client answers a close frame with its own (RFC 6455, 5.5.1), and the
        # server then ends the app's pending receive: do the same, at once.
        self._to_app.send_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})

    async def receive_text(self) -> str:
        """The next message, which must be text."""
        message = await self.receive()
        if not isinstance(message, str):
            raise AssertionError(f"expected a text message, got binary {message[:50]!r}")
        return message

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary."""
        message = await self.receive()
        if not isinstance(message, bytes):
            raise AssertionError(f"expected a binary message, got text {message[:50]!r}")
        return message

    async def receive_json(self, mode: str = "text") -> Any:
        """The next message parsed as JSON."""
        message = await (self.receive_text() if mode == "text" else self.receive_bytes())
        return json.loads(message)

    async def wait_closed(self) -> tuple[int, str]:
        """Skip messages until the app closes; return its ``(code, reason)``."""
        while True:
            try:
                await self.receive()
            except WebSocketDisconnect as exc:
                return exc.code, exc.reason

    async def assert_no_message(self, within: float = 0.1) -> None:
        """Fail with ``AssertionError`` if the app sends a message, or closes, within ``within`` seconds.

        For tests of who does *not* get a message ("the other room got
        nothing"). The app first runs until all its tasks wait, so a message it
        was about to send is seen however short ``within`` is. ``within``
        counts Trio's clock: under ``autojump_clock`` it passes instantly once
        the app is idle. A message that arrives is kept for the next
        ``receive_*``; an exception the app raised meanwhile is re-raised.
        """
        if self._closed is not None:
            raise RuntimeError("assert_no_message() on a closed test WebSocket: nothing can arrive")
        await _settle()
        if not self._held:
            try:
                message = await self._receive_within(within)
            except trio.EndOfChannel:
                self._raise_app_error()
                raise AssertionError(f"expected no message within {within}s, but the app ended") from None
            if message is None:
                return
            if message["type"] == "websocket.close":
                # Answered as receive() would; the next receive raises WebSocketDisconnect.
                self._answer_close(message)
                # Perhaps the app failed (close 1011): let it finish, and say why.
                await _settle()
                self._raise_app_error()
                raise AssertionError(f"expected no message within {within}s, got {_describe(message)}")
            self._held.append(message)
        raise AssertionError(f"expected no message within {within}s, got {_describe(self._held[0])}")

    async def _receive_within(self, seconds: float) -> Message | None:
        """The next message from the app if one comes within ``seconds``, else None."""
        try:
            return self._from_app.receive_nowait()  # what is there already counts, even with 0 seconds
        except trio.WouldBlock:
            pass
        with trio.move_on_after(seconds):
            return await self._from_app.receive()
        return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client side; the app's receive raises ``WebSocketDisconnect(code)``."""
        if self._closed is None:
            self._closed = (code, reason)
            await self._to_app.send({"type": "websocket.disconnect", "code": code, "reason": reason})

    async def vanish(self) -> None:
        """Drop the connection without a close frame, as a client that lost its network (1006)."""
        if self._closed is None:
            self._closed = (1006, "")
            await self._to_app.send({"type": "websocket.disconnect", "code": 1006, "reason": ""})

    async def _finish(self) -> None:
        await self.close()
        with trio.move_on_after(self._timeout):
            await self._app_done.wait()


def _describe(message: Message) -> str:
    """A short account of a message from the app, for assertion errors."""
    if message["type"] == "websocket.send":
        text = message.get("text")
        if text is not None:
            return f"text {text[:100]!r}"
        return f"binary {(message.get('bytes') or b'')[:100]!r}"
    if message["type"] == "websocket.close":
        return f"a close frame ({message.get('code', 1000)}, {message.get('reason') or ''!r})"
    return repr(message["type"])


class TestClient:
    """An in-memory client for a trioapi (or any ASGI) app.

    ``async with TestClient(app) as client`` runs the app's lifespan around the
    block. ``timeout`` bounds every wait for the app, so a test that expects a
    message the app never sends fails instead of hanging. With
    ``denial_responses=False`` the client plays a server without the ASGI
    denial-response extension, where every refusal is a bare 403.

    ``cookies`` are sent with every request and handshake, like a browser's:
    ``client.cookies`` is a plain dict, which the ``Set-Cookie`` headers of HTTP
    responses update (a log-in route's cookie then reaches the WebSockets).
    A request's own ``cookies=`` are added to (and win over) the client's.

    ``raise_disconnects=True`` also re-raises a ``WebSocketDisconnect`` that
    escapes a handler (one that reads until the client leaves, say), when the
    ``websocket_connect`` block ends, as Starlette's test client does; by
    default that is a normal end, as it is on a server.
    """

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        *,
        raise_server_exceptions: bool = True,
        raise_disconnects: bool = False,
        client: tuple[str, int] = ("testclient", 50000),
        base_url: str = "http://testserver",
        timeout: float = 10.0,
        denial_responses: bool = True,
        cookies: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.denial_responses = denial_responses
        #: Sent with every request and handshake; ``Set-Cookie`` in HTTP responses updates it.
        self.cookies: dict[str, str] = dict(cookies or {})
        self.raise_server_exceptions = raise_server_exceptions
        self.raise_disconnects = raise_disconnects
        self.client = client
        parts = urlsplit(base_url)
        self._scheme = parts.scheme or "http"
        self._host = parts.hostname or "testserver"
        self._port = parts.port or (443 if self._scheme == "https" else 80)
        self.timeout = timeout
        self._lifespan = LifespanDriver(app, timeout, testing=True)
        self._nursery_cm: Any = None

    # -- lifespan --------------------------------------------------------------

    async def __aenter__(self) -> TestClient:
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        try:
            await self._lifespan.startup(nursery)
        except BaseException as exc:
            nursery.cancel_scope.cancel()
            try:
                await self._nursery_cm.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                raise single_error(group) from None
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                await self._lifespan.shutdown()
        finally:
            try:
                await self._nursery_cm.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                raise single_error(group) from None

    # -- WebSocket -------------------------------------------------------------

    def _scope(
        self,
        kind: str,
        path: str,
        headers: Any,
        params: Mapping[str, Any] | None,
        cookies: Mapping[str, str] | None,
    ) -> Scope:
        route_path, query = _split_target(path, params)
        raw = _raw_headers(headers)
        jar = {**self.cookies, **(cookies or {})}
        if jar:
            pairs = "; ".join(f"{name}={value}" for name, value in jar.items())
            raw.append((b"cookie", pairs.encode("latin-1")))
        if not any(name == b"host" for name, _ in raw):
            default = self._port in (80, 443)
            host = self._host if default else f"{self._host}:{self._port}"
            raw.insert(0, (b"host", host.encode("latin-1")))
        scheme = self._scheme if kind == "http" else {"http": "ws", "https": "wss"}[self._scheme]
        return {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": scheme,
            "server": (self._host, self._port),
            "client": self.client,
            "root_path": "",
            "path": unquote(route_path),  # decoded, as servers give it; raw_path keeps it as sent
            "raw_path": route_path.encode("latin-1"),
            "query_string": query,
            "headers": raw,
            "state": dict(self._lifespan.state),
            "extensions": {
                **({"websocket.http.response": {}} if self.denial_responses else {}),
                "trioapi.testing": {
                    "raise_server_exceptions": self.raise_server_exceptions,
                    "raise_disconnects": self.raise_disconnects,
                },
            },
        }

    @asynccontextmanager
    async def websocket_connect(
        self,
        path: str,
        *,
        subprotocols: Sequence[str] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        params: Mapping[str, Any] | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> AsyncIterator[WebSocketTestSession]:
        """Open a WebSocket to ``path`` (query string allowed) and yield its session.

        The block starts once the app has accepted and then run until all its
        tasks wait (the handler in its next ``receive``, say), so what the
        handler does right after ``accept`` (joining a room, counting the
        connection) is done when the test looks. Raises ``WebSocketRejected``
        if the app refuses the handshake. On leaving the block the client
        closes with 1000 (if still open), waits for the handler to finish, and
        re-raises an exception the app raised.
        """
        scope = self._scope("websocket", path, headers, params, cookies)
        scope["subprotocols"] = list(subprotocols or ())
        session = WebSocketTestSession(self, scope, self.timeout)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session._run_app)
                try:
                    await session._handshake()
                    await _settle()
                except BaseException:
                    with trio.move_on_after(self.timeout):
                        await session._app_done.wait()
                    session._raise_app_error()
                    raise
                try:
                    yield session
                finally:
                    with trio.CancelScope(shield=True):
                        await session._finish()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise single_error(group) from None
        session._raise_app_error()

    # -- HTTP ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        params: Mapping[str, Any] | None = None,
        cookies: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
    ) -> TestResponse:
        """Send an HTTP request to the app and return its whole response.

        ``Set-Cookie`` headers of the response update ``client.cookies``.
        """
        scope = self._scope("http", path, headers, params, cookies)
        scope["method"] = method.upper()
        body = content.encode("utf-8") if isinstance(content, str) else (content or b"")
        if json is not None:
            import json as _json

            body = _json.dumps(json).encode("utf-8")
            scope["headers"].append((b"content-type", b"application/json"))
        if body:
            scope["headers"].append((b"content-length", str(len(body)).encode()))
        sent_body = False
        status = 500
        response_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = list(message.get("headers") or [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        with trio.fail_after(self.timeout):
            await self.app(scope, receive, send)
        response = TestResponse(status, Headers(raw=response_headers), b"".join(chunks))
        self._store_cookies(response.headers.getlist("set-cookie"))
        return response

    def _store_cookies(self, set_cookie_headers: list[str]) -> None:
        for header in set_cookie_headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(header)
            except CookieError:  # a cookie a browser would also ignore
                continue
            for name, morsel in jar.items():
                max_age = morsel["max-age"]
                if max_age and max_age.lstrip("-").isdigit() and int(max_age) <= 0:
                    self.cookies.pop(name, None)  # how a server deletes a cookie
                else:
                    self.cookies[name] = morsel.value

    async def get(self, path: str, **kwargs: Any) -> TestResponse:
        """``GET path``."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> TestResponse:
        """``POST path``."""
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> TestResponse:
        """``PUT path``."""
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> TestResponse:
        """``PATCH path``."""
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> TestResponse:
        """``DELETE path``."""
        return await self.request("DELETE", path, **kwargs)
