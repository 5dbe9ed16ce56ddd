"""trioapi's ``WebSocket`` class over raw ASGI, without a ``TrioAPI`` app: no routing, no runner.

``/ws`` only: ``trioapi_echo``'s own echo handler (the seed's basic example), called with a
``WebSocket(scope, receive, send)`` built here. Between ``asgi_echo`` and ``trioapi_echo``,
it splits what trioapi costs a connection into the ``WebSocket`` class and the app around it
(routing, the session's cancel scope, the close that fits).

Run:  hypercorn bench.servers.websocket_echo:app --worker-class trio --bind 127.0.0.1:PORT
"""

from __future__ import annotations

from typing import Any

from bench.servers import asgi_echo
from bench.servers.trioapi_echo import websocket_endpoint
from trioapi import WebSocket


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        await asgi_echo.app(scope, receive, send)  # lifespan, and 404 for HTTP
        return
    await websocket_endpoint(WebSocket(scope, receive, send))
