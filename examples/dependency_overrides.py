"""Swap a dependency for a test double with ``app.dependency_overrides``.

The override applies wherever the original is used, however deep, for every
connection opened while it is set.
"""

from collections.abc import AsyncIterator

from examples.yield_dependency import Database, app, get_db
from trioapi.testing import TestClient


class FakeDatabase(Database):
    async def fetch_room(self, room: str) -> list[str]:
        return [f"fake history for {room}"]


async def fake_db() -> AsyncIterator[Database]:
    yield FakeDatabase()


async def room_with_fake_database() -> None:
    app.dependency_overrides[get_db] = fake_db
    try:
        async with TestClient(app) as client, client.websocket_connect("/rooms?room=lobby") as ws:
            assert await ws.receive_text() == "fake history for lobby"
    finally:
        app.dependency_overrides.clear()
