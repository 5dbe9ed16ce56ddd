"""The seed's "WebSocket with Query Parameters": ``?room=...&user_id=...``, both required."""

from trioapi import Query, TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()


@app.websocket("/ws")
async def websocket_endpoint(
    websocket: WebSocket,
    room: str = Query(..., description="Chat room name"),
    user_id: int = Query(..., description="User ID"),
):
    await websocket.accept()
    await websocket.send_text(f"Welcome to room {room}, user {user_id}!")

    try:
        while True:
            message = await websocket.receive_text()
            await websocket.send_text(f"[{room}] User {user_id}: {message}")
    except WebSocketDisconnect:
        print(f"User {user_id} left room {room}")
