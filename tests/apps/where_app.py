"""An app that tells a client how its connection looks from the app's side.

Used by tests of TLS, proxy headers, ``root_path`` and Unix sockets, served
in-process (tests/test_serving_options.py) and by ``trioapi run``
(tests/test_cli_serving_options.py).
"""

from __future__ import annotations

from trioapi import TrioAPI, WebSocket

app = TrioAPI()


@app.websocket("/where")
async def where(websocket: WebSocket) -> None:
    """Say what the connection looks like from the app's side, then echo until the client leaves."""
    await websocket.accept()
    client = websocket.client
    await websocket.send_json(
        {
            "url": str(websocket.url),
            "scheme": websocket.scope["scheme"],
            "root_path": websocket.scope.get("root_path", ""),
            "client": [client.host, client.port] if client else None,
        }
    )
    async for text in websocket.iter_text():
        await websocket.send_text(text)
