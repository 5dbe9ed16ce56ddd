"""Chat rooms on ``ConnectionHub``: one process with ``memory://``, many with ``redis://``.

Run it on one process::

    hypercorn --worker-class trio examples.chat:app

or on four, sharing Redis::

    BROADCAST_URL=redis://127.0.0.1:6379/0 hypercorn --worker-class trio --workers 4 examples.chat:app

and open http://127.0.0.1:8000/?room=lobby in two browser tabs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from trioapi import HTMLResponse, TrioAPI, WebSocket
from trioapi.broadcast import Broadcast, ConnectionHub

# --8<-- [start:setup]
# One Broadcast per process. With redis:// every worker's hub subscribes to the
# rooms its own clients are in, so a message reaches the room in every worker.
broadcast = Broadcast(os.environ.get("BROADCAST_URL", "memory://"))

# Each member gets an outbox of 100 messages; a client that falls further behind
# is closed with 1013 (Try Again Later) and the page reconnects.
hub = ConnectionHub(broadcast, max_backlog=100, policy="disconnect")


@asynccontextmanager
async def lifespan(app: TrioAPI) -> AsyncIterator[None]:
    # Entering fails at startup, with a clear error, if Redis is unreachable.
    async with broadcast:
        yield


app = TrioAPI(lifespan=lifespan)
# --8<-- [end:setup]


@app.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)


# --8<-- [start:handler]
@app.websocket("/ws/{room}/{client_id}")
async def chat(websocket: WebSocket, room: str, client_id: str) -> None:
    await websocket.accept()
    # Joining starts this connection's sender task; it leaves every room by
    # itself when the client disconnects.
    await hub.join(room, websocket)
    await hub.broadcast(room, {"type": "joined", "client": client_id})
    async for text in websocket.iter_text():
        # Only enqueues into each member's outbox: a slow member cannot stall us.
        await hub.broadcast(room, {"type": "message", "client": client_id, "text": text})
    await hub.broadcast(room, {"type": "left", "client": client_id})
    # --8<-- [end:handler]


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>trioapi chat</title>
  <style>
    body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
    #messages { list-style: none; padding: 0; border: 1px solid #ccc; min-height: 12rem; }
    #messages li { padding: .2rem .5rem; }
    #messages li.event { color: #777; font-style: italic; }
    form { display: flex; gap: .5rem; margin-top: .5rem; }
    #text { flex: 1; }
  </style>
</head>
<body>
  <h1>Room <span id="room"></span></h1>
  <p>You are <b id="me"></b> &middot; <span id="status">connecting</span></p>
  <ul id="messages"></ul>
  <form id="form">
    <input id="text" autocomplete="off" placeholder="Say something" autofocus>
    <button id="send" type="submit">Send</button>
  </form>
  <script>
    const params = new URLSearchParams(location.search);
    const room = params.get("room") || "lobby";
    const me = params.get("name") || "guest" + Math.floor(Math.random() * 10000);
    document.getElementById("room").textContent = room;
    document.getElementById("me").textContent = me;
    const status = document.getElementById("status");
    const list = document.getElementById("messages");
    let socket = null;

    function show(text, kind) {
      const item = document.createElement("li");
      item.textContent = text;
      if (kind) item.className = kind;
      list.appendChild(item);
    }

    function connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const url = `${scheme}://${location.host}/ws/${encodeURIComponent(room)}/${encodeURIComponent(me)}`;
      socket = new WebSocket(url);
      socket.onopen = () => { status.textContent = "connected"; };
      socket.onmessage = (event) => {
        const data = JSON.parse(event.data);
        if (data.type === "message") show(`${data.client}: ${data.text}`);
        else show(`${data.client} ${data.type}`, "event");
      };
      socket.onclose = (event) => {
        status.textContent = `disconnected (${event.code})`;
        // 1013 Try Again Later: we fell behind and may have missed messages.
        if (event.code === 1013 || event.code === 1001 || event.code === 1006) setTimeout(connect, 1000);
      };
    }

    document.getElementById("form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = document.getElementById("text");
      if (input.value && socket && socket.readyState === WebSocket.OPEN) socket.send(input.value);
      input.value = "";
    });
    connect();
  </script>
</body>
</html>
"""
