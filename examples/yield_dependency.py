"""A resource held for the whole connection: a dependency with ``yield``.

The code before ``yield`` runs before the handshake is accepted; the code after
it (in ``finally``, so it also runs on errors, disconnects and shutdown) runs
once the handler has finished. ``Database`` stands in for a real client.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from trioapi import Depends, Query, TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()


class Database:
    """A pretend connection that records what happened to it."""

    log: list[str] = []

    async def fetch_room(self, room: str) -> list[str]:
        return [f"welcome to {room}"]


async def get_db() -> AsyncIterator[Database]:
    db = Database()
    Database.log.append("opened")
    try:
        yield db
    finally:
        Database.log.append("closed")


async def room_history(
    db: Annotated[Database, Depends(get_db)],
    room: Annotated[str, Query(min_length=1, max_length=32, pattern="^[a-z0-9-]+$")],
) -> list[str]:
    return await db.fetch_room(room)


@app.websocket("/rooms")
async def room(
    websocket: WebSocket,
    history: Annotated[list[str], Depends(room_history)],
    db: Annotated[Database, Depends(get_db)],  # the same Database: cached per connection
) -> None:
    await websocket.accept()
    for line in history:
        await websocket.send_text(line)
    try:
        async for message in websocket.iter_text():
            await websocket.send_text(f"echo: {message}")
    except WebSocketDisconnect:
        pass
