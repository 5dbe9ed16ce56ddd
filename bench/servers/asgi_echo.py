"""Bare ASGI echo app, no framework: the baseline trioapi-on-hypercorn is compared with.

``/ws`` echoes every message; ``/broadcast`` sends every message it receives to every
connection currently on ``/broadcast`` (the sender included), one ``send`` after another.

Run:  hypercorn bench.servers.asgi_echo:app --worker-class trio --bind 127.0.0.1:PORT
It uses no async library, so any ASGI server can run it.
"""

from __future__ import annotations

from typing import Any

_subscribers: dict[object, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await _websocket(scope, receive, send)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif kind == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    path = scope["path"]
    if path not in ("/ws", "/broadcast"):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    if path == "/ws":
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes")})
    key = object()
    _subscribers[key] = send
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            out = {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
            for other_key, other_send in list(_subscribers.items()):
                try:
                    await other_send(out)
                except Exception:
                    _subscribers.pop(other_key, None)
    finally:
        _subscribers.pop(key, None)
