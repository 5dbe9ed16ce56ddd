"""The HTTP side of trioapi's own servers: the upgrade request's head, plain answers, the scope.

Before a connection becomes a WebSocket it is an HTTP/1.1 request. Both of
trioapi's own servers read that request's head the same way: bounded in size
(431 above ``MAX_REQUEST_HEAD``), plain HTTP requests answered 426 Upgrade
Required (they serve WebSockets only), and the connection's ASGI-shaped scope
built from every request header.
"""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import unquote

from trioapi._types import Scope
from trioapi.server._listen import Address
from trioapi.transports.native import recv, send_plain

__all__ = [
    "HEAD_TOO_LARGE",
    "MAX_REQUEST_HEAD",
    "UPGRADE_REQUIRED",
    "plain_response",
    "read_request_head",
    "request_target",
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


async def read_request_head(raw: socket.socket, buffer_size: int) -> tuple[bytes, bytes] | None:
    """The request head (through its blank line) and any bytes after it, from a plain socket.

    A head over ``MAX_REQUEST_HEAD`` is answered 431, a request that is not a
    WebSocket upgrade 426; both return ``None``. ``ValueError`` if the client
    leaves before its head ends.
    """
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_REQUEST_HEAD:
            await send_plain(raw, HEAD_TOO_LARGE)
            return None
        chunk = await recv(raw, buffer_size)
        if not chunk:
            raise ValueError("connection closed before the request head ended")
        buffer += chunk
    if end > MAX_REQUEST_HEAD:
        await send_plain(raw, HEAD_TOO_LARGE)
        return None
    head, trailing = buffer[: end + 4], buffer[end + 4 :]
    if not is_upgrade(head):
        await send_plain(raw, UPGRADE_REQUIRED)
        return None
    return head, trailing


def websocket_scope(
    target: str,
    headers: list[tuple[bytes, bytes]],
    subprotocols: list[str],
    state: dict[str, Any],
    client: Address | None,
    server: Address | None,
) -> Scope:
    """The ASGI-shaped scope of a WebSocket request for ``target`` (path and query) with ``headers``."""
    path, _, query = target.partition("?")
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
        "subprotocols": subprotocols,
        "state": dict(state),
        "extensions": {"websocket.http.response": {}},
    }
    if client is not None:
        scope["client"] = client
    if server is not None:
        scope["server"] = server
    return scope


def request_target(head: bytes) -> str:
    """The request target (path and query) of an HTTP request head."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1") if len(parts) == 3 else "/"
