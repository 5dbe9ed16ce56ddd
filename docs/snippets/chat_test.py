"""Tests for the tutorial's chat (``examples/chat.py``), run by ``tests/test_snippets.py``."""

from __future__ import annotations

from typing import Any

from examples import chat
from trioapi.testing import TestClient, WebSocketTestSession


async def next_event(ws: WebSocketTestSession) -> Any:
    """The next chat event, skipping "presence" updates (whose order with the rest may vary)."""
    for _ in range(10):
        event = await ws.receive_json()
        if event["type"] != "presence":
            return event
    raise AssertionError("only presence updates")


async def wait_for_members(ws: WebSocketTestSession, expected: list[str]) -> None:
    """Read until a presence update lists ``expected`` (other events are skipped)."""
    for _ in range(10):
        event = await ws.receive_json()
        if event["type"] == "presence" and event["members"] == expected:
            return
    raise AssertionError(f"no presence update listing {expected}")


async def test_the_chat_page_is_served() -> None:
    async with TestClient(chat.app) as client:
        response = await client.get("/?room=lobby")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")


async def test_two_people_chat_in_a_room() -> None:
    async with TestClient(chat.app) as client:
        async with client.websocket_connect("/ws/lobby/ann") as ann:
            assert await next_event(ann) == {"type": "joined", "client": "ann"}

            async with client.websocket_connect("/ws/lobby/bob") as bob:
                assert await next_event(bob) == {"type": "joined", "client": "bob"}
                assert await next_event(ann) == {"type": "joined", "client": "bob"}

                await bob.send_text("hello")
                said = {"type": "message", "client": "bob", "text": "hello"}
                assert await next_event(ann) == said
                assert await next_event(bob) == said

            # Bob's block has ended: his client closed, and the room is told.
            assert await next_event(ann) == {"type": "left", "client": "bob"}


async def test_everyone_in_the_room_sees_who_is_there() -> None:
    async with TestClient(chat.app) as client:
        async with client.websocket_connect("/ws/lobby/ann") as ann:
            await wait_for_members(ann, ["ann"])
            async with client.websocket_connect("/ws/lobby/bob") as bob:
                await wait_for_members(bob, ["ann", "bob"])
                await wait_for_members(ann, ["ann", "bob"])
            await wait_for_members(ann, ["ann"])


async def test_rooms_are_separate() -> None:
    async with TestClient(chat.app) as client:
        async with (
            client.websocket_connect("/ws/lobby/ann") as ann,
            client.websocket_connect("/ws/garden/cy") as cy,
        ):
            assert await next_event(ann) == {"type": "joined", "client": "ann"}
            assert await next_event(cy) == {"type": "joined", "client": "cy"}
            await cy.send_text("anyone?")
            assert await next_event(cy) == {"type": "message", "client": "cy", "text": "anyone?"}
            await ann.send_text("hi")
            # Ann's own message is the next thing she receives: nothing from the garden.
            assert await next_event(ann) == {"type": "message", "client": "ann", "text": "hi"}


async def test_a_message_too_long_is_refused_to_its_sender_only() -> None:
    async with TestClient(chat.app) as client, client.websocket_connect("/ws/lobby/ann") as ann:
        assert await next_event(ann) == {"type": "joined", "client": "ann"}
        await ann.send_text("x" * 1001)
        refused = await next_event(ann)
        assert refused["type"] == "undelivered" and refused["reason"].startswith("too long")
        # The connection stays open: the next message goes through.
        await ann.send_text("shorter")
        assert await next_event(ann) == {"type": "message", "client": "ann", "text": "shorter"}


async def test_an_invalid_name_is_refused_with_1008_and_a_reason() -> None:
    async with TestClient(chat.app) as client, client.websocket_connect("/ws/lobby/no%20spaces") as ws:
        code, reason = await ws.wait_closed()
        assert code == 1008
        assert "1 to 32 letters" in reason
