"""The typed chat examples served by ``python -m trioapi run``, driven by the ``websockets`` client.

Valid messages flow between two clients of one room; an invalid one closes
``/chat`` with 1007 and a reason naming the field, or (``on_invalid``) is
answered with a ``problem`` message on a connection that stays open; the server
logs no crash. On hypercorn the AsyncAPI document is served at ``/asyncapi.json``.
"""

from __future__ import annotations

import importlib
import json
import urllib.request
from typing import Any

import pytest
from servers import ServerProcess, running_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

# trioapi run on hypercorn, and trioapi run --server trio-websocket.
KINDS = ("trioapi-hypercorn", "native")
TIMEOUT = 10


def receive(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=TIMEOUT))
    assert isinstance(message, dict)
    return message


def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=TIMEOUT)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


def a_room_conversation(server: ServerProcess, path: str) -> None:
    """ann and bob join one room; what bob says reaches ann, typed fields and all."""
    with connect(server.url(f"{path}?name=ann"), open_timeout=TIMEOUT) as ann:
        send(ann, {"type": "join", "room": "lobby"})
        assert receive(ann) | {"at": None} == {"type": "joined", "room": "lobby", "name": "ann", "at": None}
        with connect(server.url(f"{path}?name=bob"), open_timeout=TIMEOUT) as bob:
            send(bob, {"type": "join", "room": "lobby"})
            assert receive(ann)["name"] == "bob"
            assert receive(bob)["name"] == "bob"
            send(bob, {"type": "say", "room": "lobby", "text": "hello, typed world"})
            said = receive(ann)
            assert said == receive(bob)
            assert (said["type"], said["name"], said["text"]) == ("said", "bob", "hello, typed world")
            assert len(said["id"]) == 36 and said["at"].endswith(("+00:00", "Z"))
            send(bob, {"type": "leave", "room": "lobby"})
            assert receive(ann) == {"type": "left", "room": "lobby", "name": "bob"}


def assert_no_crash(server: ServerProcess) -> None:
    assert server.terminate() == 0
    output = server.output
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output


@pytest.mark.parametrize("kind", KINDS)
def test_typed_chat_closes_with_1007_naming_the_field(kind: str) -> None:
    with running_server(kind, "examples.typed_chat:app") as server:
        a_room_conversation(server, "/chat")
        with connect(server.url("/chat?name=eve"), open_timeout=TIMEOUT) as eve:
            send(eve, {"type": "say", "room": "lobby", "text": 42})
            assert closed_with(eve) == (1007, "invalid Say: text: expected a string, got integer")
        with connect(server.url("/chat?name=eve"), open_timeout=TIMEOUT) as eve:
            send(eve, {"type": "shout", "room": "lobby"})
            code, reason = closed_with(eve)
            assert (code, reason.split(":")[1].strip()) == (1007, "type")
        assert_no_crash(server)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("example", "path"), [("typed_chat", "/chat/forgiving"), ("typed_chat_pydantic", "/chat")]
)
def test_on_invalid_answers_with_a_problem_and_keeps_the_connection(
    example: str, path: str, kind: str
) -> None:
    with running_server(kind, f"examples.{example}:app") as server:
        a_room_conversation(server, path)
        with connect(server.url(f"{path}?name=eve"), open_timeout=TIMEOUT) as eve:
            send(eve, {"type": "join", "room": "lobby"})
            assert receive(eve)["type"] == "joined"
            send(eve, {"type": "say", "room": "lobby", "text": 42})
            problem = receive(eve)
            assert (problem["type"], problem["field"]) == ("problem", "text")
            assert problem["message"].startswith("invalid Say: text:")
            eve.send("not json")
            assert receive(eve)["message"].startswith("invalid JSON")
            send(eve, {"type": "say", "room": "lobby", "text": "still here"})
            assert receive(eve)["text"] == "still here"
        assert_no_crash(server)


@pytest.mark.parametrize("example", ["typed_chat", "typed_chat_pydantic"])
def test_hypercorn_serves_the_asyncapi_document(example: str) -> None:
    with running_server("trioapi-hypercorn", f"examples.{example}:app") as server:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.port}/asyncapi.json", timeout=TIMEOUT
        ) as reply:
            served = json.loads(reply.read())
        assert_no_crash(server)
    assert served == importlib.import_module(f"examples.{example}").app.asyncapi()
