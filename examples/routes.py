"""The seed's route API: ``APIRouter``, ``APIWebSocketRoute`` and ``url_path_for``."""

from trioapi import APIRouter, TrioAPI, WebSocket
from trioapi.routing import APIWebSocketRoute


# --8<-- [start:room_feed]
async def room_feed(websocket: WebSocket, room: str):
    await websocket.accept()
    url = websocket.app.url_path_for("room_feed", room=room)
    await websocket.send_json({"room": room, "url": url})
    async for text in websocket.iter_text():
        await websocket.send_text(f"{room}: {text}")


# --8<-- [end:room_feed]


async def status_feed(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("ok")


router = APIRouter(prefix="/rooms")
router.add_api_websocket_route("/{room}", room_feed)

app = TrioAPI(routes=[APIWebSocketRoute("/status", status_feed, name="status")])
app.include_router(router, prefix="/v1")
