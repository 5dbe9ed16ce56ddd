"""The seed's "WebSocket Error Handling": bad input gets an error message, not a dead socket."""

import json

from trioapi import TrioAPI, WebSocket, WebSocketDisconnect

app = TrioAPI()


@app.websocket("/ws/safe")
async def safe_websocket_endpoint(websocket: WebSocket):
    await websocket.accept()

    try:
        while True:
            try:
                # Receive and validate JSON
                data = await websocket.receive_text()
                parsed_data = json.loads(data)

                if "action" not in parsed_data:
                    await websocket.send_json({"error": "Missing 'action' field"})
                    continue

                # Process valid messages
                response = {"success": True, "action": parsed_data["action"], "data": parsed_data.get("data")}
                await websocket.send_json(response)

            except json.JSONDecodeError:
                await websocket.send_json({"error": "Invalid JSON format"})
            except Exception as e:
                await websocket.send_json({"error": f"Processing error: {str(e)}"})

    except WebSocketDisconnect:
        print("Client disconnected from safe WebSocket")
