"""Class-based WebSocket endpoints, as Starlette's ``starlette.endpoints`` has them.

::

    class Echo(WebSocketEndpoint):
        encoding = "text"

        async def on_receive(self, websocket: WebSocket, data: str) -> None:
            await websocket.send_text(f"Message text was: {data}")

    app.add_websocket_route("/echo", Echo)

The class is instantiated for each connection. ``on_connect`` accepts,
``on_receive`` gets each message decoded according to ``encoding``, and
``on_disconnect`` runs once when the accepted connection ends, with the peer's
close code (the ``WebSocketException``'s code, 1003 or 1007 for bad data, or
1011 when a hook raised). No dependency injection: a hook gets only the ``WebSocket``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from trioapi import status
from trioapi.exceptions import WebSocketException
from trioapi.websockets import (
    InvalidMessageData,
    UnexpectedMessageType,
    WebSocket,
    WebSocketDisconnect,
    WebSocketState,
)

if TYPE_CHECKING:
    from collections.abc import Generator

    from trioapi._types import Message, Receive, Scope, Send

__all__ = ["WebSocketEndpoint"]

_ENCODINGS = ("text", "bytes", "json", None)


class WebSocketEndpoint:
    """A WebSocket endpoint written as a class: override ``on_connect``, ``on_receive``, ``on_disconnect``.

    ``encoding`` says what ``on_receive`` gets: ``"text"`` (a ``str``; a binary
    frame closes with 1003), ``"bytes"`` (``bytes``; a text frame closes with
    1003), ``"json"`` (the parsed JSON of a text or binary frame; invalid JSON
    closes with 1007) or ``None`` (``str`` or ``bytes``, as sent). Any other
    value is refused when the class is defined.

    Declare it with ``app.add_websocket_route(path, MyEndpoint)`` or
    ``@app.websocket_route(path)``; the class is also an ASGI app on its own
    (``MyEndpoint(scope, receive, send)`` is awaitable), as in Starlette.
    """

    encoding: ClassVar[Literal["text", "bytes", "json"] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.encoding not in _ENCODINGS:
            raise TypeError(
                f"{cls.__name__}.encoding = {cls.encoding!r}: use 'text', 'bytes', 'json' or None"
            )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"{type(self).__name__} serves 'websocket' scopes, not {scope['type']!r}")
        self.scope = scope
        self.receive = receive
        self.send = send

    @classmethod
    def for_websocket(cls, websocket: WebSocket) -> WebSocketEndpoint:
        """An instance for a connection trioapi has already wrapped in ``websocket`` (what routes use)."""
        return cls(websocket.scope, websocket.receive, websocket.send)

    def __await__(self) -> Generator[Any, None, None]:
        return self.dispatch().__await__()

    async def dispatch(self) -> None:
        """Serve the ASGI connection this instance was built with."""
        await self.serve(WebSocket(self.scope, self.receive, self.send))

    async def serve(self, websocket: WebSocket) -> None:
        """Run the hooks: ``on_connect``, ``on_receive`` for each message, then ``on_disconnect``.

        ``on_disconnect`` runs once a connection ``on_connect`` accepted has ended,
        however it ended; not if ``on_connect`` raised or refused the handshake.
        """
        await self.on_connect(websocket)
        if websocket.application_state is not WebSocketState.CONNECTED:
            return  # on_connect refused (or already closed) the connection: no session to end
        close_code = status.WS_1000_NORMAL_CLOSURE
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    close_code = int(message.get("code") or status.WS_1000_NORMAL_CLOSURE)
                    break
                await self.on_receive(websocket, await self.decode(websocket, message))
        except WebSocketDisconnect as exc:
            # A hook's send or receive found the peer gone: the same end as a disconnect message.
            close_code = exc.code
        except WebSocketException as exc:
            close_code = exc.code  # bad data (1003, 1007) or the app's choice: the close it gets
            raise
        except Exception:
            close_code = status.WS_1011_INTERNAL_ERROR
            raise
        finally:
            await self.on_disconnect(websocket, close_code)

    async def decode(self, websocket: WebSocket, message: Message) -> Any:
        """The data of a ``websocket.receive`` message, according to ``encoding``.

        A frame of the wrong kind raises ``UnexpectedMessageType`` (close 1003),
        invalid JSON ``InvalidMessageData`` (close 1007).
        """
        text: str | None = message.get("text")
        data: bytes | None = message.get("bytes")
        if self.encoding == "text":
            if text is None:
                raise UnexpectedMessageType("text", "binary")
            return text
        if self.encoding == "bytes":
            if data is None:
                raise UnexpectedMessageType("binary", "text")
            return data
        if self.encoding == "json":
            try:
                return json.loads(text if text is not None else (data or b"").decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidMessageData("message is not valid UTF-8") from None
            except (ValueError, RecursionError) as exc:
                raise InvalidMessageData(f"invalid JSON: {exc}") from None
        return text if text is not None else data

    async def on_connect(self, websocket: WebSocket) -> None:
        """Called first; accepts the connection. Override to choose a subprotocol, check, or refuse."""
        await websocket.accept()

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        """Called with each message, decoded according to ``encoding``."""

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        """Called once at the end with the close code (see the module's description)."""
