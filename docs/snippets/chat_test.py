"""Tests for the tutorial's chat (``examples/chat.py``), run by ``tests/test_snippets.py``."""

from __future__ import annotations

from examples import chat
from trioapi.testing import TestClient


async def test_the_chat_page_is_served() -> None:
    async with TestClient(chat.app) as client:
        response = await client.get("/?room=lobby")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")


async def test_two_people_chat_in_a_room() -> None:
    async with TestClient(chat.app) as client:
        async with client.websocket_connect("/ws/lobby/ann") as ann:
            assert await ann.receive_json() == {"type": "joined", "client": "ann"}

            async with client.websocket_connect("/ws/lobby/bob") as bob:
                assert await bob.receive_json() == {"type": "joined", "client": "bob"}
                assert await ann.receive_json() == {"type": "joined", "client": "bob"}

                await bob.send_text("hello")
                said = {"type": "message", "client": "bob", "text": "hello"}
                assert await ann.receive_json() == said
                assert await bob.receive_json() == said

            # Bob's block has ended: his client closed, and the room is told.
            assert await ann.receive_json() == {"type": "left", "client": "bob"}


async def test_rooms_are_separate() -> None:
    async with TestClient(chat.app) as client:
        async with (
            client.websocket_connect("/ws/lobby/ann") as ann,
            client.websocket_connect("/ws/garden/cy") as cy,
        ):
            assert await ann.receive_json() == {"type": "joined", "client": "ann"}
            assert await cy.receive_json() == {"type": "joined", "client": "cy"}
            await cy.send_text("anyone?")
            assert await cy.receive_json() == {"type": "message", "client": "cy", "text": "anyone?"}
            await ann.send_text("hi")
            # Ann's own message is the next thing she receives: nothing from the garden.
            assert await ann.receive_json() == {"type": "message", "client": "ann", "text": "hi"}
