"""Connections built from hand-made ASGI scopes, to test dependency solving without a server."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from trioapi._types import Message
from trioapi.requests import Request
from trioapi.websockets import WebSocket


def _scope(
    kind: str, target: str, headers: Mapping[str, str] | Sequence[tuple[str, str]] | None
) -> dict[str, Any]:
    path, _, query = target.partition("?")
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return {
        "type": kind,
        "path": path,
        "query_string": query.encode("latin-1"),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items],
    }


def websocket_for(
    target: str = "/",
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    path_params: Mapping[str, Any] | None = None,
) -> WebSocket:
    """A connecting WebSocket for ``target`` (``"/ws?x=1"``); it never sends or receives."""
    scope = _scope("websocket", target, headers)
    scope["path_params"] = dict(path_params or {})

    async def receive() -> Message:
        raise AssertionError("dependency solving must not receive")

    async def send(message: Message) -> None:
        raise AssertionError("dependency solving must not send")

    return WebSocket(scope, receive, send)


def request_for(
    target: str = "/",
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    *,
    json_body: Any = None,
    body: bytes = b"",
    path_params: Mapping[str, Any] | None = None,
) -> Request:
    """A POST ``Request`` for ``target`` with ``body`` (or ``json_body`` encoded)."""
    scope = _scope("http", target, headers)
    scope["method"] = "POST"
    scope["path_params"] = dict(path_params or {})
    payload = json.dumps(json_body).encode() if json_body is not None else body

    async def receive() -> Message:
        return {"type": "http.request", "body": payload, "more_body": False}

    return Request(scope, receive)
