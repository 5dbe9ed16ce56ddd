"""Raw trio-websocket ``serve_websocket`` server: the baseline for trioapi's native transport.

``/ws`` echoes; ``/broadcast`` fans every message out to every ``/broadcast`` connection
(the sender included) with a plain send loop.

Run:  python bench/servers/trio_websocket_echo.py PORT
"""

from __future__ import annotations

import sys

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

_subscribers: set[WebSocketConnection] = set()


async def handler(request: WebSocketRequest) -> None:
    path = request.path
    if path not in ("/ws", "/broadcast"):
        await request.reject(404)
        return
    ws = await request.accept()
    if path == "/ws":
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass
        return
    _subscribers.add(ws)
    try:
        while True:
            message = await ws.get_message()
            for other in list(_subscribers):
                try:
                    await other.send_message(message)
                except ConnectionClosed:
                    _subscribers.discard(other)
    except ConnectionClosed:
        pass
    finally:
        _subscribers.discard(ws)


async def main(port: int) -> None:
    await serve_websocket(handler, "127.0.0.1", port, ssl_context=None)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
