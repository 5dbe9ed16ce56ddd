"""The access log: one line per WebSocket accepted, closed or refused, and per HTTP request.

Lines go to the ``trioapi.access`` logger at INFO, worded for people, with the
same facts as ``extra`` fields on the record (``client``, ``path``, ``event``,
``code``, ``closed_by``, ``duration``, ``messages_in``, ``messages_out``,
``status``) for a structured formatter (``trioapi run --log-format json``)::

    127.0.0.1:50421 - "WebSocket /ws/lobby" accepted (subprotocol chat.v1)
    127.0.0.1:50421 - "WebSocket /ws/lobby" closed 1000 by client after 12.31 s, 5 in / 7 out
    127.0.0.1:50422 - "WebSocket /nowhere" refused 404
    127.0.0.1:50423 - "GET /health HTTP/1.1" 200 in 0.4 ms

Every function checks the logger's level first, so a server logging at WARNING
pays one comparison per connection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["http_request", "logger", "websocket_accepted", "websocket_closed", "websocket_refused"]

logger = logging.getLogger("trioapi.access")


def _client(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def websocket_accepted(scope: Mapping[str, Any], subprotocol: str | None) -> None:
    """A handshake was accepted."""
    if logger.isEnabledFor(logging.INFO):
        client, path = _client(scope), scope.get("path", "?")
        logger.info(
            '%s - "WebSocket %s" accepted%s',
            client,
            path,
            f" (subprotocol {subprotocol})" if subprotocol else "",
            extra={"client": client, "path": path, "event": "accepted", "subprotocol": subprotocol},
        )


def websocket_closed(
    scope: Mapping[str, Any],
    code: int,
    closed_by: str,
    duration: float,
    messages_in: int,
    messages_out: int,
) -> None:
    """An accepted connection ended: its close code, who closed first, its duration, what it carried."""
    if logger.isEnabledFor(logging.INFO):
        client, path = _client(scope), scope.get("path", "?")
        logger.info(
            '%s - "WebSocket %s" closed %s by %s after %.2f s, %d in / %d out',
            client,
            path,
            code,
            closed_by,
            duration,
            messages_in,
            messages_out,
            extra={
                "client": client,
                "path": path,
                "event": "closed",
                "code": code,
                "closed_by": closed_by,
                "duration": round(duration, 6),
                "messages_in": messages_in,
                "messages_out": messages_out,
            },
        )


def websocket_refused(scope: Mapping[str, Any], status: int) -> None:
    """A handshake was refused with HTTP ``status`` (403 for a close before accept)."""
    if logger.isEnabledFor(logging.INFO):
        client, path = _client(scope), scope.get("path", "?")
        logger.info(
            '%s - "WebSocket %s" refused %s',
            client,
            path,
            status,
            extra={"client": client, "path": path, "event": "refused", "status": status},
        )


def http_request(scope: Mapping[str, Any], status: int, duration: float) -> None:
    """An HTTP request was answered."""
    if logger.isEnabledFor(logging.INFO):
        client, path = _client(scope), scope.get("path", "?")
        method = scope.get("method", "?")
        version = scope.get("http_version", "1.1")
        logger.info(
            '%s - "%s %s HTTP/%s" %s in %.1f ms',
            client,
            method,
            path,
            version,
            status,
            duration * 1000,
            extra={
                "client": client,
                "path": path,
                "event": "http",
                "method": method,
                "status": status,
                "duration": round(duration, 6),
            },
        )
