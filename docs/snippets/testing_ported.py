"""Tests of ported FastAPI apps, as the testing guide shows them; run by ``tests/test_snippets.py``."""

from __future__ import annotations

from examples import auth_cookie, chat, connection_manager
from trioapi.testing import TestClient


async def test_the_manager_knows_a_client_as_soon_as_it_is_connected() -> None:
    manager = connection_manager.manager
    async with TestClient(connection_manager.app) as client:
        async with client.websocket_connect("/ws/1"), client.websocket_connect("/ws/2"):
            # No sleep needed: the handlers have run up to their next receive.
            assert len(manager.active_connections) == 2
        assert manager.active_connections == []


async def test_the_other_room_gets_nothing() -> None:
    async with TestClient(chat.app) as client:
        async with (
            client.websocket_connect("/ws/lobby/ann") as ann,
            client.websocket_connect("/ws/garden/cy") as cy,
        ):
            assert await ann.receive_json() == {"type": "joined", "client": "ann"}
            assert await ann.receive_json() == {"type": "presence", "members": ["ann"]}
            assert await cy.receive_json() == {"type": "joined", "client": "cy"}
            assert await cy.receive_json() == {"type": "presence", "members": ["cy"]}
            await cy.send_text("anyone?")
            assert await cy.receive_json() == {"type": "message", "client": "cy", "text": "anyone?"}
            await ann.assert_no_message(within=0.1)


async def test_a_session_cookie_logs_the_socket_in() -> None:
    async with TestClient(auth_cookie.app) as client:
        async with client.websocket_connect(
            "/ws", cookies={"session": "abc123"}, headers={"origin": "https://chat.example.com"}
        ) as ws:
            assert await ws.receive_json() == {"user": "alice", "unread": 3}
