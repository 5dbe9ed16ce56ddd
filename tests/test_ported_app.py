"""A FastAPI app ported by its imports only (tests/apps/ported_fastapi_app.py), served as a user
serves it (``trioapi run``, and ``hypercorn --worker-class trio``) and driven by third-party clients:
``websockets`` for the sockets, ``urllib`` for the page and its static file."""

from __future__ import annotations

import json
import socket
import struct
import urllib.request
from collections.abc import Iterator

import pytest
from servers import ROOT, ServerProcess, running_server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

TARGET = "apps.ported_fastapi_app:app"


@pytest.fixture(scope="module", params=["trioapi-hypercorn", "hypercorn"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with running_server(request.param, TARGET, env={"PYTHONPATH": str(ROOT / "tests")}) as served:
        yield served


def chat(server: ServerProcess, room: str, cookie: str) -> ClientConnection:
    return connect(
        server.url(f"/ws/{room}"), additional_headers={"Cookie": f"session={cookie}"}, open_timeout=10
    )


def receive(client: ClientConnection) -> dict[str, object]:
    message: dict[str, object] = json.loads(client.recv(timeout=10))
    return message


def test_the_page_and_its_static_file_are_served(server: ServerProcess) -> None:
    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(f"{base}/", timeout=10) as page:
        assert page.status == 200 and b"/static/app.js" in page.read()
    with urllib.request.urlopen(f"{base}/static/app.js", timeout=10) as script:
        assert script.read() == b'console.log("chat");\n'


def test_a_room_hears_its_members_and_learns_who_left(server: ServerProcess) -> None:
    with chat(server, "lobby", "abc") as ann:
        # The startup event ran before the first connection, and the sync dependency served the user.
        assert receive(ann) == {"type": "joined", "user": "ann", "started": True}
        with chat(server, "lobby", "def") as bob:
            assert receive(ann) == receive(bob) == {"type": "joined", "user": "bob", "started": True}
            bob.send("hello")
            said = {"type": "message", "user": "bob", "text": "hello"}
            assert receive(ann) == receive(bob) == said
        # Bob's client left with a close frame; the manager's except block told the room.
        assert receive(ann) == {"type": "left", "user": "bob"}


def test_a_socket_without_a_valid_session_is_refused_with_403(server: ServerProcess) -> None:
    # Refused before accept with WebSocketException(1008): no close code can travel before a
    # 101, so the handshake gets 403, as under FastAPI; never a 500 or a traceback.
    with pytest.raises(InvalidStatus) as refused:
        chat(server, "lobby", "nope")
    assert refused.value.response.status_code == 403
    assert "Traceback" not in server.output


@pytest.mark.parametrize("how", ["FIN", "reset"])
def test_a_member_whose_connection_drops_is_said_to_have_left(server: ServerProcess, how: str) -> None:
    with chat(server, "garden", "abc") as ann:
        assert receive(ann)["type"] == "joined"
        with chat(server, "garden", "def") as bob:
            assert receive(ann) == receive(bob) == {"type": "joined", "user": "bob", "started": True}
            if how == "reset":
                bob.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                bob.socket.shutdown(socket.SHUT_WR)
            bob.socket.close()  # no close frame: the client's library finds its socket gone
            assert receive(ann) == {"type": "left", "user": "bob"}
    assert "Traceback" not in server.output
