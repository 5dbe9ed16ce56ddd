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
            # Then who is in the room, each time that changes.
            assert await ann.receive_json() == {"type": "presence", "members": ["ann"]}

            async with client.websocket_connect("/ws/lobby/bob") as bob:
                assert await bob.receive_json() == {"type": "joined", "client": "bob"}
                assert await bob.receive_json() == {"type": "presence", "members": ["ann", "bob"]}
                assert await ann.receive_json() == {"type": "joined", "client": "bob"}
                assert await ann.receive_json() == {"type": "presence", "members": ["ann", "bob"]}

                await bob.send_text("hello")
                said = {"type": "message", "client": "bob", "text": "hello"}
                assert await ann.receive_json() == said
                assert await bob.receive_json() == said

            # Bob's block has ended: his client closed, and the room is told.
            assert await ann.receive_json() == {"type": "left", "client": "bob"}
            assert await ann.receive_json() == {"type": "presence", "members": ["ann"]}


async def test_rooms_are_separate() -> None:
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
            await ann.send_text("hi")
            # Ann's own message is the next thing she receives: nothing from the garden.
            assert await ann.receive_json() == {"type": "message", "client": "ann", "text": "hi"}


async def test_a_message_too_long_is_refused_to_its_sender_only() -> None:
    async with TestClient(chat.app) as client, client.websocket_connect("/ws/lobby/ann") as ann:
        assert await ann.receive_json() == {"type": "joined", "client": "ann"}
        assert await ann.receive_json() == {"type": "presence", "members": ["ann"]}
        await ann.send_text("x" * 1001)
        refused = await ann.receive_json()
        assert (refused["type"], refused["reason"]) == ("undelivered", "too long: at most 1000 characters")
        # The connection stays open: the next message goes through.
        await ann.send_text("shorter")
        assert await ann.receive_json() == {"type": "message", "client": "ann", "text": "shorter"}


async def test_an_invalid_name_is_refused_with_1008_and_a_reason() -> None:
    async with TestClient(chat.app) as client, client.websocket_connect("/ws/lobby/no%20spaces") as ws:
        code, reason = await ws.wait_closed()
        assert code == 1008
        assert "1 to 32 letters" in reason
