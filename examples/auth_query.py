"""A token in the query string (``/ws?token=...``): works from any client, browsers included.

The URL, token and all, lands in access logs and browser history: hand out
short-lived tokens made for this one purpose.
"""

from typing import Annotated

from trioapi import Depends, HTTPException, TrioAPI, WebSocket, WebSocketDisconnect
from trioapi.security import APIKeyQuery

app = TrioAPI()
token_in_query = APIKeyQuery(name="token")

VALID_TOKENS = {"s3cret": "alice"}


def current_user(token: Annotated[str, Depends(token_in_query)]) -> str:
    """The user the token belongs to; 401 before the handshake completes otherwise."""
    user = VALID_TOKENS.get(token)
    if user is None:
        raise HTTPException(status_code=401, detail="Invalid token", headers={"WWW-Authenticate": "APIKey"})
    return user


@app.websocket("/ws")
async def chat(websocket: WebSocket, user: Annotated[str, Depends(current_user)]) -> None:
    await websocket.accept()
    await websocket.send_text(f"Hello, {user}!")
    try:
        async for message in websocket.iter_text():
            await websocket.send_text(f"{user}: {message}")
    except WebSocketDisconnect:
        pass
