"""The seed's "WebSocket JSON Communication": JSON in, JSON out."""

from typing import Any, Dict

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()


@app.websocket("/ws/json")
async def websocket_json_endpoint(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            # Receive JSON data
            data: Dict[str, Any] = await websocket.receive_json()

            # Process the data
            response = {"type": "response", "original_message": data, "timestamp": "2023-01-01T00:00:00Z"}

            # Send JSON response
            await websocket.send_json(response)
    except WebSocketDisconnect:
        print("JSON WebSocket client disconnected")
