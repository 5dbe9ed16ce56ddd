"""A session cookie: the browser sends it by itself, so check ``Origin`` too.

Any page on any site can open a WebSocket to this app and the browser will
attach the cookie (cross-site WebSocket hijacking). ``allowed_origins`` denies
handshakes from other sites with 403 before any handler or dependency runs.
"""

from typing import Annotated

from trioapi import Depends, HTTPException, TrioAPI, WebSocket
from trioapi.security import APIKeyCookie

app = TrioAPI(allowed_origins=["https://chat.example.com"])
session_cookie = APIKeyCookie(name="session")

SESSIONS = {"abc123": "alice"}


def current_user(session: Annotated[str, Depends(session_cookie)]) -> str:
    """The user of the session cookie; 401 when it is missing or unknown."""
    user = SESSIONS.get(session)
    if user is None:
        raise HTTPException(status_code=401, detail="Session expired", headers={"WWW-Authenticate": "APIKey"})
    return user


@app.websocket("/ws")
async def notifications(websocket: WebSocket, user: Annotated[str, Depends(current_user)]) -> None:
    await websocket.accept()
    await websocket.send_json({"user": user, "unread": 3})
    await websocket.close()
