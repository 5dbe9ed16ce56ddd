"""Chat rooms with typed messages: a tagged-union protocol, validated, and documented in AsyncAPI.

Serve it, then read its documentation at http://127.0.0.1:8000/asyncapi::

    trioapi run examples.typed_chat:app

Connect to ``ws://127.0.0.1:8000/chat?name=ann`` and send JSON messages, each
a ``Join``, ``Say`` or ``Leave``, told apart by their ``type``::

    {"type": "join", "room": "lobby"}
    {"type": "say", "room": "lobby", "text": "hello"}
    {"type": "leave", "room": "lobby"}

Everyone in the room gets ``joined``, ``said`` and ``left`` messages. A message
that does not fit closes ``/chat`` with 1007 and a reason naming the field;
``/chat/forgiving`` answers it with a ``problem`` message and carries on.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import attrs

from trioapi import Query, TrioAPI, WebSocket
from trioapi.broadcast import ConnectionHub
from trioapi.messages import MessageValidationError, jsonable

app = TrioAPI(
    title="Typed chat",
    version="1.0.0",
    description="Chat rooms over one WebSocket: join rooms, say things in them, leave them.",
)
hub = ConnectionHub()


# --8<-- [start:messages]
# What the client sends: one of three messages, told apart by "type".
@attrs.frozen
class Join:
    """Join a room, to receive what is said there."""

    type: Literal["join"]
    room: str = attrs.field(metadata={"description": "The room's name"})


@attrs.frozen
class Say:
    """Say something in a room you have joined."""

    type: Literal["say"]
    room: str
    text: str = attrs.field(validator=attrs.validators.max_len(500))


@attrs.frozen
class Leave:
    """Leave a room."""

    type: Literal["leave"]
    room: str


ClientMessage = Join | Say | Leave


# What the server sends.
@attrs.frozen
class Joined:
    """Someone joined the room."""

    room: str
    name: str
    at: datetime.datetime
    type: Literal["joined"] = "joined"


@attrs.frozen
class Said:
    """Someone said something in the room."""

    room: str
    name: str
    text: str
    id: uuid.UUID
    at: datetime.datetime
    type: Literal["said"] = "said"


@attrs.frozen
class Left:
    """Someone left the room."""

    room: str
    name: str
    type: Literal["left"] = "left"


@attrs.frozen
class Problem:
    """Your last message was refused; the connection stays open."""

    message: str
    field: str | None = None
    type: Literal["problem"] = "problem"


ServerMessage = Joined | Said | Left | Problem
# --8<-- [end:messages]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --8<-- [start:route]
Name = Annotated[str, Query(min_length=1, max_length=32, description="Your name in the rooms")]


@app.websocket("/chat", receives=ClientMessage, sends=ServerMessage, summary="Chat rooms", tags=["chat"])
async def chat(websocket: WebSocket, name: Name) -> None:
    """Join rooms, say things in them, leave them. An invalid message closes the connection with 1007."""
    await websocket.accept()
    joined: set[str] = set()
    # Each message is a Join, a Say or a Leave, already validated.
    async for message in websocket.iter_models():
        match message:
            case Join(room=room):
                joined.add(room)
                await hub.join(room, websocket)
                await hub.broadcast(room, jsonable(Joined(room, name, now())))
            case Say(room=room, text=text) if room in joined:
                await hub.broadcast(room, jsonable(Said(room, name, text, uuid.uuid4(), now())))
            case Say(room=room):
                await websocket.send_model(Problem(f"join {room!r} before you speak there", "room"))
            case Leave(room=room):
                joined.discard(room)
                hub.leave(room, websocket)
                await hub.broadcast(room, jsonable(Left(room, name)))
    # --8<-- [end:route]


# --8<-- [start:on_invalid]
async def answer_problem(websocket: WebSocket, error: MessageValidationError) -> None:
    """Tell the client what was wrong with its message, and keep the connection."""
    where = ".".join(str(part) for part in error.errors()[0]["loc"])
    await websocket.send_model(Problem(error.reason, where or None))


# The same handler, forgiving: an invalid message is answered with a Problem.
app.add_api_websocket_route(
    "/chat/forgiving",
    chat,
    name="chat_forgiving",
    receives=ClientMessage,
    sends=ServerMessage,
    summary="Chat rooms, forgiving invalid messages",
    description="As /chat, but a message that does not fit is answered with a problem message.",
    tags=["chat"],
    on_invalid=answer_problem,
)
# --8<-- [end:on_invalid]
