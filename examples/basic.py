"""The seed's "Basic WebSocket Endpoint": echo every text message back."""

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"Message text was: {data}")
    except WebSocketDisconnect:
        print("Client disconnected")
