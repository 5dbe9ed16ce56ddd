"""A synchronous test client with the API of Starlette's (``fastapi.testclient``), for ported tests.

FastAPI's tests are plain ``def`` functions::

    from trioapi.testclient import TestClient   # was: from fastapi.testclient import TestClient

    client = TestClient(app)

    def test_echo():
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("hi")
            assert websocket.receive_text() == "Message text was: hi"

They run unchanged against a trioapi app: the app runs in a Trio run of its
own, in a background thread, and talks ASGI to ``trioapi.testing.TestClient``
there, which this client drives and whose behaviour it has (every wait bounded
by ``timeout``, refusals as ``WebSocketRejected``). What differs is what
Starlette's client does:

- ``with TestClient(app) as client:`` runs the lifespan around the block, and
  the block's calls share one Trio run; outside such a block each request and
  each ``websocket_connect`` gets a Trio run (and a thread) of its own;
- an exception that escapes the app is re-raised into the test, and that
  includes a ``WebSocketDisconnect`` that escapes a handler (the tutorial's
  ``while True: await websocket.receive_text()`` when the test's block ends);
- a handshake refused with a close raises ``WebSocketDisconnect`` (a
  ``WebSocketRejected`` with the close ``code``), one refused with an HTTP
  response ``WebSocketDenialResponse`` (``status_code``, ``headers``,
  ``content``, ``text``, ``json()``);
- ``receive()`` and ``send(message)`` take and give ASGI messages; the
  handshake carries ``user-agent: testclient`` and the WebSocket upgrade
  headers Starlette's client sends.

Write new tests with the async ``trioapi.testing.TestClient`` under
pytest-trio: the same app in the test's own Trio run, no threads, and
``autojump_clock`` for time.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeVar

import trio

from trioapi._types import ASGIApp, Message
from trioapi.testing import TestClient as AsyncTestClient
from trioapi.testing import TestResponse, WebSocketDenialResponse
from trioapi.testing import WebSocketTestSession as AsyncWebSocketTestSession

__all__ = ["TestClient", "WebSocketDenialResponse", "WebSocketTestSession"]

_T = TypeVar("_T")

#: What every request and handshake carries unless the test says otherwise, as from Starlette's client.
DEFAULT_HEADERS = {"user-agent": "testclient", "accept": "*/*"}

#: The upgrade headers of a WebSocket handshake from Starlette's client.
WEBSOCKET_HEADERS = {
    "connection": "upgrade",
    "sec-websocket-key": "testserver==",
    "sec-websocket-version": "13",
}

_Headers = Mapping[str, str] | Sequence[tuple[str, str]]


class _Portal:
    """A Trio run in a thread of its own, which a synchronous caller hands async work to."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="trioapi-testclient", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self, ready: threading.Event) -> None:
        try:
            trio.run(self._main, ready)
        except BaseException as error:  # raised in the caller's thread, by stop()
            self._error = error
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()  # what a caller left behind (it should have left nothing)

    def call(self, function: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """Run ``await function(*args)`` in the portal's Trio run; return its result or raise its error."""
        return trio.from_thread.run(function, *args, trio_token=self._token)

    async def start(self, function: Callable[..., Awaitable[Any]]) -> Any:
        """``nursery.start(function)`` in the portal's nursery, where tasks outlive a ``call``."""
        assert self._nursery is not None
        return await self._nursery.start(function)

    def stop(self) -> None:
        """End the Trio run and its thread."""
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()
        if self._error is not None:
            raise self._error


class _Hosted(Generic[_T]):
    """An async context manager entered and exited in one task of a portal, driven from a sync ``with``.

    Trio's nurseries (the test client's and the connection's) must be entered and
    left by the same task: a host task does both and waits between them.
    """

    def __init__(self, portal: _Portal, manager: AbstractAsyncContextManager[_T]) -> None:
        self._portal = portal
        self._manager = manager
        self._leave = trio.Event()
        self._left = trio.Event()
        self._exc_info: tuple[Any, Any, Any] = (None, None, None)
        self._suppress: bool | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> _T:
        value: _T = self._portal.call(self._portal.start, self._host)
        return value

    async def _host(self, *, task_status: trio.TaskStatus[_T]) -> None:
        value = await self._manager.__aenter__()  # an error here comes out of start(), to __enter__
        task_status.started(value)
        await self._leave.wait()
        try:
            self._suppress = await self._manager.__aexit__(*self._exc_info)
        except BaseException as error:  # raised in the caller's thread, by _finish
            self._error = error
        finally:
            self._left.set()

    async def _finish(self) -> bool | None:
        self._leave.set()
        await self._left.wait()
        if self._error is not None:
            raise self._error
        return self._suppress

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._exc_info = (exc_type, exc, tb)
        try:
            return bool(self._portal.call(self._finish))
        except BaseException as error:
            if error is exc:
                return False  # the block's own exception, passed through: let ``with`` raise it
            raise


def _with_defaults(defaults: Mapping[str, str], given: _Headers | None) -> list[tuple[str, str]]:
    """``given`` headers, after the ``defaults`` they do not name (names compared without case)."""
    items = list(given.items() if isinstance(given, Mapping) else (given or ()))
    named = {name.lower() for name, _ in items}
    return [(name, value) for name, value in defaults.items() if name not in named] + items


class WebSocketTestSession:
    """The client end of one WebSocket, made by ``TestClient.websocket_connect``; a sync context manager.

    Entering performs the handshake (``WebSocketDisconnect`` or
    ``WebSocketDenialResponse`` when the app refuses); leaving closes with 1000
    if still open, waits for the handler to finish and re-raises what escaped
    the app. ``accepted_subprotocol`` and ``extra_headers`` (the headers the
    app added to its accept) come from the handshake.
    """

    __test__ = False

    def __init__(
        self,
        client: TestClient,
        connect: Callable[[AsyncTestClient], AbstractAsyncContextManager[AsyncWebSocketTestSession]],
    ) -> None:
        self._client = client
        self._connect = connect
        self._session: AsyncWebSocketTestSession | None = None
        self._portal: _Portal | None = None
        self._hosted: _Hosted[AsyncWebSocketTestSession] | None = None
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] | None = None

    def __enter__(self) -> WebSocketTestSession:
        portal, async_client = self._client._enter_run()
        try:
            self._hosted = _Hosted(portal, self._connect(async_client))
            self._session = self._hosted.__enter__()
        except BaseException:
            self._client._leave_run(portal)
            raise
        self._portal = portal
        self.accepted_subprotocol = self._session.accepted_subprotocol
        self.extra_headers = list(self._session.response_headers.raw)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        assert self._hosted is not None and self._portal is not None
        try:
            return self._hosted.__exit__(exc_type, exc, tb)
        finally:
            self._client._leave_run(self._portal)

    def _call(self, method: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        if self._portal is None:
            raise RuntimeError("Use the session in a 'with client.websocket_connect(...)' block")
        return self._portal.call(method, *args)

    @property
    def _async(self) -> AsyncWebSocketTestSession:
        if self._session is None:
            raise RuntimeError("Use the session in a 'with client.websocket_connect(...)' block")
        return self._session

    def send(self, message: Message) -> None:
        """Send an ASGI message to the app (``websocket.receive`` or ``websocket.disconnect``)."""
        self._call(self._async.send_message, message)

    def send_text(self, data: str) -> None:
        """Send a text frame to the app."""
        self._call(self._async.send_text, data)

    def send_bytes(self, data: bytes) -> None:
        """Send a binary frame to the app."""
        self._call(self._async.send_bytes, data)

    def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as JSON in a text (or ``"binary"``) frame."""
        self._call(self._async.send_json, data, mode)

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close from the client side: the app's receive raises ``WebSocketDisconnect(code)``."""
        self._call(self._async.close, code, reason or "")

    def receive(self) -> Message:
        """The next ASGI message from the app: ``websocket.send`` or ``websocket.close``."""
        return self._call(self._async.receive_message)

    def receive_text(self) -> str:
        """The next message, which must be text; ``WebSocketDisconnect`` if the app closes instead."""
        return self._call(self._async.receive_text)

    def receive_bytes(self) -> bytes:
        """The next message, which must be binary; ``WebSocketDisconnect`` if the app closes instead."""
        return self._call(self._async.receive_bytes)

    def receive_json(self, mode: str = "text") -> Any:
        """The next message parsed as JSON; ``WebSocketDisconnect`` if the app closes instead."""
        return self._call(self._async.receive_json, mode)


class TestClient:
    """A synchronous client for a trioapi (or any ASGI) app, with the API of Starlette's ``TestClient``.

    ``with TestClient(app) as client:`` runs the app's lifespan around the
    block. ``raise_server_exceptions=False`` shows what a client would see
    (a 500, a 1011 close) instead of re-raising the app's errors. ``cookies``
    are sent with every request and handshake and updated by ``Set-Cookie``;
    ``headers`` with every one. ``timeout`` bounds every wait for the app.
    """

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        raise_server_exceptions: bool = True,
        *,
        cookies: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        client: tuple[str, int] = ("testclient", 50000),
        timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.base_url = base_url
        self.raise_server_exceptions = raise_server_exceptions
        #: Sent with every request and handshake; ``Set-Cookie`` in HTTP responses updates it.
        self.cookies: dict[str, str] = dict(cookies or {})
        #: Sent with every request and handshake (``user-agent: testclient`` unless replaced).
        self.headers: dict[str, str] = {**DEFAULT_HEADERS, **(headers or {})}
        self.client = client
        self.timeout = timeout
        # While in a ``with`` block: the Trio run that hosts the lifespan, and its client.
        self._running: tuple[_Portal, AsyncTestClient, _Hosted[AsyncTestClient]] | None = None

    def _async_client(self) -> AsyncTestClient:
        async_client = AsyncTestClient(
            self.app,
            raise_server_exceptions=self.raise_server_exceptions,
            raise_disconnects=True,
            client=self.client,
            base_url=self.base_url,
            timeout=self.timeout,
        )
        async_client.cookies = self.cookies  # one cookie jar, whichever run uses it
        return async_client

    def _enter_run(self) -> tuple[_Portal, AsyncTestClient]:
        """The Trio run (and its async client) for a call: the ``with`` block's, or a new one."""
        if self._running is not None:
            return self._running[0], self._running[1]
        return _Portal(), self._async_client()

    def _leave_run(self, portal: _Portal) -> None:
        if self._running is None or portal is not self._running[0]:
            portal.stop()

    # -- lifespan --------------------------------------------------------------

    def __enter__(self) -> TestClient:
        if self._running is not None:
            raise RuntimeError("This TestClient is already in a 'with' block")
        portal = _Portal()
        hosted = _Hosted(portal, self._async_client())
        try:
            async_client = hosted.__enter__()
        except BaseException:
            portal.stop()
            raise
        self._running = (portal, async_client, hosted)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._running is not None
        portal, _, hosted = self._running
        self._running = None
        try:
            hosted.__exit__(exc_type, exc, tb)
        finally:
            portal.stop()

    # -- WebSocket -------------------------------------------------------------

    def websocket_connect(
        self,
        url: str,
        subprotocols: Sequence[str] | None = None,
        *,
        headers: _Headers | None = None,
        params: Mapping[str, Any] | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> WebSocketTestSession:
        """A WebSocket to ``url`` (a path, query string allowed); the handshake happens on ``with``."""
        sent = _with_defaults({**self.headers, **WEBSOCKET_HEADERS}, headers)

        def connect(async_client: AsyncTestClient) -> AbstractAsyncContextManager[AsyncWebSocketTestSession]:
            return async_client.websocket_connect(
                url, subprotocols=subprotocols, headers=sent, params=params, cookies=cookies
            )

        return WebSocketTestSession(self, connect)

    # -- HTTP ------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: _Headers | None = None,
        params: Mapping[str, Any] | None = None,
        cookies: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
    ) -> TestResponse:
        """Send an HTTP request to the app and return its whole response."""
        portal, async_client = self._enter_run()
        try:
            send = partial(
                async_client.request,
                method,
                url,
                headers=_with_defaults(self.headers, headers),
                params=params,
                cookies=cookies,
                content=content,
                json=json,
            )
            return portal.call(send)
        finally:
            self._leave_run(portal)

    def get(self, url: str, **kwargs: Any) -> TestResponse:
        """``GET url``."""
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> TestResponse:
        """``HEAD url``."""
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> TestResponse:
        """``OPTIONS url``."""
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> TestResponse:
        """``POST url``."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> TestResponse:
        """``PUT url``."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> TestResponse:
        """``PATCH url``."""
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> TestResponse:
        """``DELETE url``."""
        return self.request("DELETE", url, **kwargs)
