"""A token carried in ``Sec-WebSocket-Protocol``, the one handshake header a browser page can set.

The page offers its real protocol and the token side by side::

    new WebSocket("wss://example.com/ws", ["chat.v1", "access_token." + token])

and the handler accepts ``chat.v1``: never the token, which would echo it back.
"""

from typing import Annotated

from trioapi import Depends, HTTPException, TrioAPI, WebSocket
from trioapi.security import APIKeySubprotocol

app = TrioAPI()
token_in_subprotocol = APIKeySubprotocol(name="access_token.")

VALID_TOKENS = {"t0ken": "alice"}


def current_user(token: Annotated[str, Depends(token_in_subprotocol)]) -> str:
    """The user the token belongs to; 401 before the handshake completes otherwise."""
    user = VALID_TOKENS.get(token)
    if user is None:
        raise HTTPException(status_code=401, detail="Invalid token", headers={"WWW-Authenticate": "APIKey"})
    return user


@app.websocket("/ws")
async def chat(websocket: WebSocket, user: Annotated[str, Depends(current_user)]) -> None:
    if "chat.v1" not in websocket.subprotocols:
        # accept() refuses a subprotocol the client did not offer: say so with a 400.
        raise HTTPException(status_code=400, detail="Offer the chat.v1 subprotocol")
    await websocket.accept(subprotocol="chat.v1")
    await websocket.send_text(f"Hello, {user}!")
    await websocket.close()
