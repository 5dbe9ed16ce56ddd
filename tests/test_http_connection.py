"""``HTTPConnection`` (``WebSocket``, ``Request``): a read-only mapping over the scope, equal by identity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from trioapi import HTTPConnection, Request, TrioAPI, WebSocket
from trioapi.testing import TestClient


def _scope(**extra: Any) -> dict[str, Any]:
    return {"type": "websocket", "path": "/ws", "headers": [], "subprotocols": ["chat"], **extra}


async def _never_receive() -> dict[str, Any]:
    raise AssertionError("not called")


async def _never_send(message: dict[str, Any]) -> None:
    raise AssertionError("not called")


def _websocket(**extra: Any) -> WebSocket:
    return WebSocket(_scope(**extra), _never_receive, _never_send)


def test_websocket_items_are_the_scope_items() -> None:
    websocket = _websocket()
    assert websocket["type"] == "websocket"
    assert websocket["subprotocols"] == ["chat"]
    assert websocket.get("root_path", "") == ""
    assert "path" in websocket and "method" not in websocket


def test_websocket_len_iteration_and_dict_follow_the_scope() -> None:
    websocket = _websocket()
    assert isinstance(websocket, Mapping)
    assert len(websocket) == len(websocket.scope) == 4
    assert list(websocket) == ["type", "path", "headers", "subprotocols"]
    assert dict(websocket) == websocket.scope


def test_a_missing_key_raises_key_error() -> None:
    with pytest.raises(KeyError):
        _websocket()["method"]


def test_the_mapping_is_read_only() -> None:
    websocket = _websocket()
    with pytest.raises(TypeError):
        websocket["type"] = "http"  # type: ignore[index]
    with pytest.raises(TypeError):
        del websocket["type"]  # type: ignore[attr-defined]


def test_connections_with_equal_scopes_are_different_dict_keys_and_set_members() -> None:
    first, second = _websocket(), _websocket()
    assert first.scope == second.scope
    assert first != second
    assert first == first
    assert len({first, second}) == 2
    members = {first: "alice", second: "bob"}
    assert members[first] == "alice" and members[second] == "bob"


def test_request_and_plain_connection_are_mappings_too() -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    request = Request(scope)
    assert request["method"] == "GET"
    assert dict(HTTPConnection(scope)) == scope
    assert hash(request) != hash(Request(scope))


async def test_a_handler_reads_its_scope_through_the_websocket() -> None:
    app = TrioAPI()

    @app.websocket("/ws/{room}")
    async def room(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {"type": websocket["type"], "path": websocket["path"], "offered": websocket["subprotocols"]}
        )

    async with TestClient(app) as client, client.websocket_connect("/ws/a", subprotocols=["v1"]) as ws:
        assert await ws.receive_json() == {"type": "websocket", "path": "/ws/a", "offered": ["v1"]}
