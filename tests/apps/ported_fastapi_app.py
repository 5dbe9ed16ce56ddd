"""A FastAPI rooms chat written the way such apps are found in public repositories,
with only the imports the porting guide lists changed (``fastapi`` -> ``trioapi``,
``FastAPI`` -> ``TrioAPI``, ``fastapi.staticfiles`` -> ``trioapi.staticfiles``).

What it reaches for: a page and a static folder next to the socket, a deprecated
startup event, a sync generator dependency (a "database session"), a cookie check
that refuses with ``WebSocketException``, a connection manager with a ``while True``
receive loop and a broadcast to the room. Served by ``tests/test_ported_app.py``.
"""

from pathlib import Path

from trioapi import Cookie, Depends, TrioAPI, WebSocket, WebSocketDisconnect, WebSocketException, status
from trioapi.responses import HTMLResponse
from trioapi.staticfiles import StaticFiles

app = TrioAPI()
app.mount("/static", StaticFiles(directory=Path(__file__).parent / "ported_static"), name="static")

started = []


@app.on_event("startup")
async def startup():
    started.append(True)


class FakeSession:
    def __init__(self):
        self.closed = False

    def user_for(self, token):
        return {"abc": "ann", "def": "bob"}.get(token)

    def close(self):
        self.closed = True


def get_db():
    db = FakeSession()
    try:
        yield db
    finally:
        db.close()


async def get_user(session: str | None = Cookie(None), db: FakeSession = Depends(get_db)):
    user = db.user_for(session) if session else None
    if user is None:
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
    return user


class ConnectionManager:
    def __init__(self):
        self.rooms: dict[str, list[WebSocket]] = {}

    async def connect(self, room: str, websocket: WebSocket):
        await websocket.accept()
        self.rooms.setdefault(room, []).append(websocket)

    def disconnect(self, room: str, websocket: WebSocket):
        self.rooms[room].remove(websocket)

    async def broadcast(self, room: str, message: dict):
        for connection in self.rooms.get(room, []):
            await connection.send_json(message)


manager = ConnectionManager()


@app.get("/")
async def index():
    return HTMLResponse("<html><body><script src='/static/app.js'></script></body></html>")


@app.websocket("/ws/{room}")
async def chat(websocket: WebSocket, room: str, user: str = Depends(get_user)):
    await manager.connect(room, websocket)
    await manager.broadcast(room, {"type": "joined", "user": user, "started": bool(started)})
    try:
        while True:
            text = await websocket.receive_text()
            await manager.broadcast(room, {"type": "message", "user": user, "text": text})
    except WebSocketDisconnect:
        manager.disconnect(room, websocket)
        await manager.broadcast(room, {"type": "left", "user": user})
