"""The seed's "WebSocket with Custom Close Handling": the client asks, the server closes."""

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()


@app.websocket("/ws/custom-close")
async def websocket_with_custom_close(websocket: WebSocket):
    await websocket.accept()

    try:
        while True:
            data = await websocket.receive_text()

            if data == "close":
                await websocket.close(code=1000, reason="Client requested close")
                break
            elif data == "error":
                await websocket.close(code=1011, reason="Server error occurred")
                break
            else:
                await websocket.send_text(f"Received: {data}")

    except WebSocketDisconnect as disconnect:
        print(f"WebSocket disconnected with code: {disconnect.code}, reason: {disconnect.reason}")
