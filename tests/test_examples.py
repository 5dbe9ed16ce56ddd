"""Every seed example, in memory: the messages, close codes and rejections the seed promises."""

from __future__ import annotations

# --8<-- [start:imports]
import pytest

from examples import (
    basic,
    connection_manager,
    custom_close,
    dependencies,
    error_handling,
    json_messages,
    path_params,
    query_params,
    routes,
    typed_chat,
)
from trioapi.testing import TestClient, WebSocketRejected

# --8<-- [end:imports]


# --8<-- [start:basic]
async def test_basic_echo() -> None:
    async with TestClient(basic.app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "Message text was: hello"


# --8<-- [end:basic]


# --8<-- [start:path_params]
async def test_path_params_converts_client_id() -> None:
    async with TestClient(path_params.app) as client, client.websocket_connect("/ws/42") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "Client 42: hi"


# --8<-- [end:path_params]


# --8<-- [start:path_params_rejected]
async def test_path_params_rejects_a_non_integer_client_id() -> None:
    async with TestClient(path_params.app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws/abc"):
                pass
    assert info.value.code == 1008
    assert "client_id" in info.value.reason


# --8<-- [end:path_params_rejected]


# --8<-- [start:dependencies]
async def test_dependencies_valid_token_greets_and_echoes() -> None:
    headers = {"Authorization": "Bearer valid-token"}
    async with TestClient(dependencies.app) as client, client.websocket_connect("/ws", headers=headers) as ws:
        assert await ws.receive_text() == "Authenticated with token: valid-token"
        await ws.send_text("ping")
        assert await ws.receive_text() == "Echo: ping"


# --8<-- [end:dependencies]


# --8<-- [start:dependencies_denied]
async def test_dependencies_wrong_token_is_denied_with_401() -> None:
    headers = {"Authorization": "Bearer nope"}
    async with TestClient(dependencies.app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws", headers=headers):
                pass
    assert info.value.status_code == 401
    assert info.value.json() == {"detail": "Invalid token"}


# --8<-- [end:dependencies_denied]


# --8<-- [start:dependencies_missing]
async def test_dependencies_missing_token_is_denied() -> None:
    async with TestClient(dependencies.app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
    assert info.value.status_code in (401, 403)


# --8<-- [end:dependencies_missing]


# --8<-- [start:json_messages]
async def test_json_messages_wraps_the_original() -> None:
    async with TestClient(json_messages.app) as client, client.websocket_connect("/ws/json") as ws:
        await ws.send_json({"hello": "wörld"})
        assert await ws.receive_json() == {
            "type": "response",
            "original_message": {"hello": "wörld"},
            "timestamp": "2023-01-01T00:00:00Z",
        }


# --8<-- [end:json_messages]


# --8<-- [start:connection_manager]
async def test_connection_manager_broadcasts_and_announces_leavers() -> None:
    async with TestClient(connection_manager.app) as client:
        async with client.websocket_connect("/ws/1") as one:
            async with client.websocket_connect("/ws/2") as two:
                await one.send_text("hi")
                assert await one.receive_text() == "You wrote: hi"
                assert await one.receive_text() == "Client #1 says: hi"
                assert await two.receive_text() == "Client #1 says: hi"
            assert await one.receive_text() == "Client #2 left the chat"
    assert connection_manager.manager.active_connections == []


# --8<-- [end:connection_manager]


# --8<-- [start:query_params]
async def test_query_params_welcome_and_echo() -> None:
    async with TestClient(query_params.app) as client:
        async with client.websocket_connect("/ws?room=lobby&user_id=7") as ws:
            assert await ws.receive_text() == "Welcome to room lobby, user 7!"
            await ws.send_text("yo")
            assert await ws.receive_text() == "[lobby] User 7: yo"


# --8<-- [end:query_params]


# --8<-- [start:query_params_rejected]
@pytest.mark.parametrize("query", ["", "?room=lobby", "?room=lobby&user_id=seven"])
async def test_query_params_missing_or_invalid_user_id_is_rejected_naming_it(query: str) -> None:
    async with TestClient(query_params.app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect(f"/ws{query}"):
                pass
    assert info.value.code == 1008
    assert "user_id" in info.value.reason or "room" in info.value.reason
    assert len(info.value.reason.encode()) <= 123


# --8<-- [end:query_params_rejected]


# --8<-- [start:error_handling]
async def test_error_handling_answers_every_kind_of_input() -> None:
    async with TestClient(error_handling.app) as client, client.websocket_connect("/ws/safe") as ws:
        await ws.send_text("{not json")
        assert await ws.receive_json() == {"error": "Invalid JSON format"}
        await ws.send_text('{"data": 1}')
        assert await ws.receive_json() == {"error": "Missing 'action' field"}
        await ws.send_text('{"action": "go", "data": [1]}')
        assert await ws.receive_json() == {"success": True, "action": "go", "data": [1]}
        await ws.send_text("[1, 2]")
        assert await ws.receive_json() == {"error": "Missing 'action' field"}
        await ws.send_text('"action"')
        assert (await ws.receive_json())["error"].startswith("Processing error")


# --8<-- [end:error_handling]


# --8<-- [start:custom_close]
@pytest.mark.parametrize(
    ("command", "code", "reason"),
    [("close", 1000, "Client requested close"), ("error", 1011, "Server error occurred")],
)
async def test_custom_close_codes(command: str, code: int, reason: str) -> None:
    async with TestClient(custom_close.app) as client, client.websocket_connect("/ws/custom-close") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "Received: hello"
        await ws.send_text(command)
        assert await ws.wait_closed() == (code, reason)


# --8<-- [end:custom_close]


# --8<-- [start:routes]
async def test_routes_router_prefix_and_url_path_for() -> None:
    async with TestClient(routes.app) as client:
        async with client.websocket_connect("/v1/rooms/blue") as ws:
            assert await ws.receive_json() == {"room": "blue", "url": "/v1/rooms/blue"}
            await ws.send_text("hi")
            assert await ws.receive_text() == "blue: hi"
        async with client.websocket_connect("/status") as ws:
            assert await ws.receive_text() == "ok"


# --8<-- [end:routes]


# --8<-- [start:typed_chat]
async def test_typed_chat_delivers_typed_messages_and_refuses_bad_ones() -> None:
    async with TestClient(typed_chat.app) as client:
        async with client.websocket_connect("/chat", params={"name": "ann"}) as ann:
            await ann.send_json({"type": "join", "room": "lobby"})
            assert (await ann.receive_json())["type"] == "joined"
            await ann.send_json({"type": "say", "room": "lobby", "text": "hi"})
            said = await ann.receive_json()
            assert (said["type"], said["name"], said["text"]) == ("said", "ann", "hi")
            await ann.send_json({"type": "say", "room": "lobby", "text": 42})
            assert await ann.wait_closed() == (1007, "invalid Say: text: expected a string, got integer")


async def test_typed_chat_forgiving_answers_a_bad_message_with_a_problem() -> None:
    async with TestClient(typed_chat.app) as client:
        async with client.websocket_connect("/chat/forgiving", params={"name": "bob"}) as bob:
            await bob.send_json({"type": "shout"})
            problem = await bob.receive_json()
            assert (problem["type"], problem["field"]) == ("problem", "type")
            await bob.send_json({"type": "say", "room": "lobby", "text": "hi"})
            assert await bob.receive_json() == {
                "type": "problem",
                "message": "join 'lobby' before you speak there",
                "field": "room",
            }


# --8<-- [end:typed_chat]
