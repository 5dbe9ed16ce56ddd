"""Porting guide: validating messages by hand, as in FastAPI, and with ``receive_model``."""

from __future__ import annotations

from pydantic import BaseModel

from trioapi import TrioAPI, WebSocket

app = TrioAPI()


class ChatMessage(BaseModel):
    room: str
    text: str


# --8<-- [start:before]
# FastAPI: parse and validate each message by hand; a bad one raises
# pydantic.ValidationError, which ends the connection as a server error.
@app.websocket("/by-hand")
async def by_hand(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = ChatMessage.model_validate_json(await websocket.receive_text())
        await websocket.send_text(f"[{message.room}] {message.text}")


# --8<-- [end:before]


# --8<-- [start:after]
# trioapi: declare the type; a bad message closes with 1007 naming the field,
# and the AsyncAPI document describes the route's messages.
@app.websocket("/typed", receives=ChatMessage)
async def typed(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_models():
        await websocket.send_text(f"[{message.room}] {message.text}")


# --8<-- [end:after]
