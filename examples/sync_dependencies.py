"""FastAPI's database dependency as it is: a plain ``def`` with ``yield``, and ``Depends(scope=...)``.

``get_db`` blocks (sqlite3 here; SQLAlchemy's ``SessionLocal()`` in most apps):
trioapi runs its setup and its teardown in worker threads, as FastAPI runs them
in its thread pool, so the event loop keeps serving other connections. The
connection is used from the handler too, another thread, hence
``check_same_thread=False`` (the same setting FastAPI's SQL tutorial uses).

``hold_room`` is function-scoped: its lock is released as soon as the handler
returns, before the final close frame. ``get_db`` keeps the default scope,
``"request"``: it is closed after the close frame has gone out.
"""

import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import trio

from trioapi import Depends, TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()
room_locks: dict[str, trio.Lock] = {}
closed: list[str] = []  # what the teardowns did, for the tests


# --8<-- [start:get_db]
def get_db() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        yield db
    finally:
        db.close()
        closed.append("db")


# --8<-- [end:get_db]


# --8<-- [start:scopes]
async def hold_room(room: str) -> AsyncIterator[str]:
    lock = room_locks.setdefault(room, trio.Lock())
    async with lock:  # one speaker per room
        yield room
    closed.append("room")


@app.websocket("/speak/{room}")
async def speak(
    websocket: WebSocket,
    db: Annotated[sqlite3.Connection, Depends(get_db)],
    room: Annotated[str, Depends(hold_room, scope="function")],
) -> None:
    await websocket.accept()
    db.execute("create table said (line text)")
    try:
        async for line in websocket.iter_text():
            db.execute("insert into said values (?)", (line,))
            (count,) = db.execute("select count(*) from said").fetchone()
            await websocket.send_text(f"{room}: {count} line(s)")
    except WebSocketDisconnect:
        pass


# --8<-- [end:scopes]
