"""The seed's "WebSocket with Dependencies": a bearer token checked before accept.

A wrong token is denied with HTTP 401 on the wire, before the handler runs.
"""

from trioapi import Depends, HTTPException, TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.security import HTTPBearer

app = TrioAPI()
security = HTTPBearer()


def verify_websocket_token(token: str = Depends(security)):
    if token.credentials != "valid-token":
        raise HTTPException(status_code=401, detail="Invalid token")
    return token.credentials


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, token: str = Depends(verify_websocket_token)):
    await websocket.accept()
    await websocket.send_text(f"Authenticated with token: {token}")
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"Echo: {data}")
    except WebSocketDisconnect:
        print("Authenticated client disconnected")
