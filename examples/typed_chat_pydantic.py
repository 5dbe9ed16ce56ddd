"""The typed chat (``examples/typed_chat.py``) with pydantic models instead of attrs classes.

trioapi does not depend on pydantic: when a route's message types are pydantic
models, it validates and serializes them with pydantic, and takes their JSON
Schema from pydantic too. Serve it with::

    trioapi run examples.typed_chat_pydantic:app

and read its documentation at http://127.0.0.1:8000/asyncapi.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from trioapi import Query, TrioAPI, WebSocket
from trioapi.broadcast import ConnectionHub
from trioapi.messages import MessageValidationError, jsonable

app = TrioAPI(
    title="Typed chat (pydantic)",
    version="1.0.0",
    description="Chat rooms over one WebSocket: join rooms, say things in them, leave them.",
)
hub = ConnectionHub()


# --8<-- [start:messages]
class Join(BaseModel):
    """Join a room, to receive what is said there."""

    type: Literal["join"]
    room: str = Field(description="The room's name")


class Say(BaseModel):
    """Say something in a room you have joined."""

    type: Literal["say"]
    room: str
    text: str = Field(max_length=500)


class Leave(BaseModel):
    """Leave a room."""

    type: Literal["leave"]
    room: str


# pydantic picks the member by "type" when told which field discriminates.
ClientMessage = Annotated[Join | Say | Leave, Field(discriminator="type")]
# --8<-- [end:messages]


class Joined(BaseModel):
    """Someone joined the room."""

    type: Literal["joined"] = "joined"
    room: str
    name: str
    at: datetime.datetime


class Said(BaseModel):
    """Someone said something in the room."""

    type: Literal["said"] = "said"
    room: str
    name: str
    text: str
    id: uuid.UUID
    at: datetime.datetime


class Left(BaseModel):
    """Someone left the room."""

    type: Literal["left"] = "left"
    room: str
    name: str


class Problem(BaseModel):
    """Your last message was refused; the connection stays open."""

    type: Literal["problem"] = "problem"
    message: str
    field: str | None = None


ServerMessage = Annotated[Joined | Said | Left | Problem, Field(discriminator="type")]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


Name = Annotated[str, Query(min_length=1, max_length=32, description="Your name in the rooms")]


async def answer_problem(websocket: WebSocket, error: MessageValidationError) -> None:
    """Tell the client what was wrong with its message, and keep the connection."""
    where = ".".join(str(part) for part in error.errors()[0]["loc"])
    await websocket.send_model(Problem(message=error.reason, field=where or None))


@app.websocket(
    "/chat",
    receives=ClientMessage,
    sends=ServerMessage,
    summary="Chat rooms",
    tags=["chat"],
    on_invalid=answer_problem,
)
async def chat(websocket: WebSocket, name: Name) -> None:
    """Join rooms, say things in them, leave them; an invalid message is answered with a problem."""
    await websocket.accept()
    joined: set[str] = set()
    async for message in websocket.iter_models():
        match message:
            case Join(room=room):
                joined.add(room)
                await hub.join(room, websocket)
                await hub.broadcast(room, jsonable(Joined(room=room, name=name, at=now())))
            case Say(room=room, text=text) if room in joined:
                said = Said(room=room, name=name, text=text, id=uuid.uuid4(), at=now())
                await hub.broadcast(room, jsonable(said))
            case Say(room=room):
                await websocket.send_model(
                    Problem(message=f"join {room!r} before you speak there", field="room")
                )
            case Leave(room=room):
                joined.discard(room)
                hub.leave(room, websocket)
                await hub.broadcast(room, jsonable(Left(room=room, name=name)))
