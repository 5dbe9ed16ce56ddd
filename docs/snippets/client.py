"""A tiny WebSocket client for trying the tutorial's servers from a terminal.

    python docs/snippets/client.py ws://127.0.0.1:8000/ws hello world

sends each word as a text message, prints every reply, and prints how the
server closed the connection. Built on trio-websocket, which trioapi installs.
"""

from __future__ import annotations

import sys

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url


async def talk(url: str, messages: list[str], *, wait: float = 0.5) -> list[str]:
    """Send ``messages`` to ``url``; return the lines printed (replies, then how it ended)."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    try:
        async with open_websocket_url(url) as ws:
            for message in messages:
                await ws.send_message(message)
            # Print replies until the server has been quiet for `wait` seconds.
            while True:
                with trio.move_on_after(wait) as quiet:
                    say(f"< {await ws.get_message()}")
                if quiet.cancelled_caught:
                    break
    except ConnectionRejected as exc:
        say(f"handshake refused: HTTP {exc.status_code} {(exc.body or b'').decode()}".rstrip())
    except ConnectionClosed as exc:
        say(f"closed by the server: {exc.reason.code} {exc.reason.reason or ''}".rstrip())
    return lines


if __name__ == "__main__":
    trio.run(talk, sys.argv[1], sys.argv[2:])
