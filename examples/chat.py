"""Chat rooms on ``ConnectionHub``: one process with ``memory://``, many with ``redis://``.

Run it on one process::

    trioapi run examples.chat:app --port 8000

or on four, sharing Redis::

    BROADCAST_URL=redis://127.0.0.1:6379/0 trioapi run examples.chat:app --port 8000 --workers 4

and open http://127.0.0.1:8000/?room=lobby in two browser tabs.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from examples.presence import Presence
from trioapi import HTMLResponse, TrioAPI, WebSocket, WebSocketException, status
from trioapi.broadcast import BackendUnavailable, Broadcast, ConnectionHub, Message

# --8<-- [start:setup]
# One Broadcast per process. With redis:// every worker's hub subscribes to the
# rooms its own clients are in, so a message reaches the room in every worker.
broadcast = Broadcast(os.environ.get("BROADCAST_URL", "memory://"))

# Each member gets an outbox of 100 messages; a client that falls further behind
# is closed with 1013 (Try Again Later) and the page reconnects.
hub = ConnectionHub(broadcast, max_backlog=100, policy="disconnect")

# Who is in each room, in every process: each process announces its own members.
presence = Presence(broadcast, hub)


@asynccontextmanager
async def lifespan(app: TrioAPI) -> AsyncIterator[None]:
    # Entering fails at startup, with a clear error, if Redis is unreachable.
    async with broadcast, presence.running():
        yield


app = TrioAPI(lifespan=lifespan)
# --8<-- [end:setup]

PAGE = (Path(__file__).parent / "chat.html").read_text(encoding="utf-8")


@app.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)


@app.get("/health")
async def health() -> dict[str, str]:
    # For load balancers and container health checks: the process serves requests.
    return {"status": "ok"}


# Names and rooms: short, and safe to show. Checked after accept, so that the
# page gets the reason with a 1008 close (a refused handshake reaches a browser
# as a bare 1006, which it would retry forever).
NAME = re.compile(r"[\w.-]{1,32}")
MAX_TEXT = 1000
UNAVAILABLE = "the chat service is briefly unavailable; try again in a moment"


# --8<-- [start:handler]
@app.websocket("/ws/{room}/{client_id}")
async def chat(websocket: WebSocket, room: str, client_id: str) -> None:
    await websocket.accept()
    if not (NAME.fullmatch(room) and NAME.fullmatch(client_id)):
        reason = "a name or room is 1 to 32 letters, digits, '.', '-' or '_'"
        raise WebSocketException(status.WS_1008_POLICY_VIOLATION, reason)
    # Joining starts this connection's sender task; it leaves every room by
    # itself when the client disconnects.
    await hub.join(room, websocket)
    await say(room, {"type": "joined", "client": client_id})
    # Listed in the room (in every process) until the client leaves.
    with presence.entered(room, client_id):
        async for text in websocket.iter_text():
            if len(text) > MAX_TEXT:
                refusal = f"too long: at most {MAX_TEXT} characters"
            elif await say(room, {"type": "message", "client": client_id, "text": text}):
                continue
            else:
                refusal = UNAVAILABLE
            # Only the sender is told; the connection stays open for the next message.
            await hub.send_personal(websocket, {"type": "undelivered", "text": text, "reason": refusal})
    await say(room, {"type": "left", "client": client_id})


async def say(room: str, event: Message) -> bool:
    """Broadcast ``event`` to ``room``; ``False`` if it could not be sent (Redis is down)."""
    try:
        # Only enqueues into each member's outbox: a slow member cannot stall us.
        await hub.broadcast(room, event)
    except BackendUnavailable:
        # The backend has logged the outage once; each message need not log it again.
        return False
    return True
    # --8<-- [end:handler]
