"""The HTTP side of trioapi's own servers: the upgrade request's head, plain answers, the scope.

Before a connection becomes a WebSocket it is an HTTP/1.1 request. Both of
trioapi's own servers read that request's head the same way: bounded in size
(431 above ``MAX_REQUEST_HEAD``), plain HTTP requests answered 426 Upgrade
Required (they serve WebSockets only), and the connection's ASGI-shaped scope
built from every request header, with the settings of ``ScopeSettings``
(TLS's ``wss``, the ``root_path``, trusted proxies' headers).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import attrs

from trioapi._types import Scope
from trioapi.server._config import ServerConfig
from trioapi.server._listen import Address
from trioapi.server._proxy import TrustedProxies, apply_proxy_headers

__all__ = [
    "HEAD_TOO_LARGE",
    "MAX_REQUEST_HEAD",
    "UPGRADE_REQUIRED",
    "RequestHead",
    "ScopeSettings",
    "header_lines",
    "plain_response",
    "read_request_head",
    "websocket_scope",
]

#: Longest HTTP request head accepted before the handshake, in bytes.
MAX_REQUEST_HEAD = 16 * 1024


def plain_response(status: int, phrase: str, body: bytes, headers: tuple[str, ...] = ()) -> bytes:
    """An HTTP/1.1 response that closes the connection, for requests that never become WebSockets."""
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        *headers,
        "Connection: close",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


UPGRADE_REQUIRED = plain_response(
    426, "Upgrade Required", b"This server only speaks WebSocket (RFC 6455)\n", ("Upgrade: websocket",)
)
HEAD_TOO_LARGE = plain_response(431, "Request Header Fields Too Large", b"Request head too large\n")

#: An ``Upgrade`` header line naming ``websocket``, in a lowercased request head.
_UPGRADE_TO_WEBSOCKET = re.compile(rb"\r\nupgrade[ \t]*:[^\r\n]*websocket")


def is_upgrade(head: bytes) -> bool:
    """Whether a request head asks for a WebSocket (``Upgrade: websocket``): one search, no parsing."""
    return _UPGRADE_TO_WEBSOCKET.search(head.lower()) is not None


def header_lines(head: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(name, value)`` lines of an HTTP request head, names lowercased, both stripped."""
    headers = []
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((name.strip().lower(), value.strip()))
    return headers


@attrs.frozen
class RequestHead:
    """An upgrade request's head, as read before the WebSocket handshake."""

    #: The head's bytes, through its blank line.
    raw: bytes
    #: Bytes the client sent after it (frames it did not wait to send).
    trailing: bytes

    @property
    def target(self) -> str:
        """The request target: path and query."""
        parts = self.raw.split(b"\r\n", 1)[0].split(b" ")
        return parts[1].decode("latin-1") if len(parts) == 3 else "/"


async def read_request_head(
    receive: Callable[[int], Awaitable[bytes | bytearray]],
    send: Callable[[bytes], Awaitable[None]],
    buffer_size: int,
) -> RequestHead | None:
    """Read an upgrade request's head with ``receive(size)`` (``b""`` at the end), answering with ``send``.

    A head over ``MAX_REQUEST_HEAD`` is answered 431, a request that is not a
    WebSocket upgrade 426; both return ``None``. ``ValueError`` if the client
    leaves before its head ends.
    """
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_REQUEST_HEAD:
            await send(HEAD_TOO_LARGE)
            return None
        chunk = await receive(buffer_size)
        if not chunk:
            raise ValueError("connection closed before the request head ended")
        buffer += chunk
    if end > MAX_REQUEST_HEAD:
        await send(HEAD_TOO_LARGE)
        return None
    head = RequestHead(bytes(buffer[: end + 4]), bytes(buffer[end + 4 :]))
    if not is_upgrade(head.raw):
        await send(UPGRADE_REQUIRED)
        return None
    return head


@attrs.frozen
class ScopeSettings:
    """How a server's scopes differ from the plain case: TLS, a root path, trusted proxies."""

    #: ``"wss"`` behind the server's own TLS.
    scheme: str = "ws"
    root_path: str = ""
    #: Whose proxy headers are believed; ``None`` when ``proxy_headers`` is off.
    proxies: TrustedProxies | None = None

    @classmethod
    def of(cls, config: ServerConfig) -> ScopeSettings:
        """The settings ``config`` asks for (``ValueError`` for a bad ``forwarded_allow_ips``)."""
        return cls(
            scheme="wss" if config.certfile else "ws",
            root_path=config.root_path,
            proxies=TrustedProxies.parse(config.forwarded_allow_ips) if config.proxy_headers else None,
        )


def websocket_scope(
    target: str,
    headers: list[tuple[bytes, bytes]],
    subprotocols: list[str],
    state: dict[str, Any],
    client: Address | None,
    server: Address | None,
    settings: ScopeSettings = ScopeSettings(),
) -> Scope:
    """The ASGI-shaped scope of a WebSocket request for ``target`` (path and query) with ``headers``."""
    path, _, query = target.partition("?")
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": settings.scheme,
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": settings.root_path,
        "headers": headers,
        "subprotocols": subprotocols,
        "state": dict(state),
        "extensions": {"websocket.http.response": {}},
    }
    if client is not None:
        scope["client"] = client
    if server is not None:
        scope["server"] = server
    if settings.proxies is not None:
        apply_proxy_headers(scope, settings.proxies)
    return scope
