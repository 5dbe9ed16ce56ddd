"""The seed's "WebSocket with Path Parameters": ``client_id`` converted from the annotation."""

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()


@app.websocket("/ws/{client_id}")
async def websocket_endpoint(websocket: WebSocket, client_id: int):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"Client {client_id}: {data}")
    except WebSocketDisconnect:
        print(f"Client {client_id} disconnected")
