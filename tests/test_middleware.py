"""``TrioAPI(middleware=[Middleware(cls, ...)])`` and ``add_middleware``: ASGI middleware around the app."""

from __future__ import annotations

from typing import Any

import pytest

from trioapi import TrioAPI, WebSocket
from trioapi._types import ASGIApp, Message, Receive, Scope, Send
from trioapi.middleware import Middleware
from trioapi.testing import TestClient


class Tag:
    """Records the scope types it sees, and adds its name to each text frame the app sends."""

    def __init__(self, app: ASGIApp, name: str, seen: list[str]) -> None:
        self.app = app
        self.name = name
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(f"{self.name}:{scope['type']}")

        async def tagged(message: Message) -> None:
            if message["type"] == "websocket.send" and message.get("text") is not None:
                message = {**message, "text": f"{self.name}({message['text']})"}
            await send(message)

        await self.app(scope, receive, tagged)


def _echo_app(**options: Any) -> TrioAPI:
    app = TrioAPI(**options)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    return app


async def test_the_first_middleware_of_the_list_is_the_outermost() -> None:
    seen: list[str] = []
    app = _echo_app(middleware=[Middleware(Tag, "outer", seen), Middleware(Tag, name="inner", seen=seen)])
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "outer(inner(hi))"
    assert seen[-2:] == ["outer:websocket", "inner:websocket"]


async def test_middleware_sees_lifespan_and_http_scopes_too() -> None:
    seen: list[str] = []
    app = _echo_app(middleware=[Middleware(Tag, "m", seen)])
    async with TestClient(app) as client:
        assert (await client.get("/ping")).json() == "pong"
    assert seen == ["m:lifespan", "m:http"]


async def test_add_middleware_wraps_the_middleware_added_before() -> None:
    seen: list[str] = []
    app = _echo_app(middleware=[Middleware(Tag, "first", seen)])
    app.add_middleware(Tag, "added", seen)
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("x")
        assert await ws.receive_text() == "added(first(x))"


async def test_adding_middleware_after_the_app_started_is_an_error() -> None:
    app = _echo_app(middleware=[Middleware(Tag, "m", [])])
    async with TestClient(app):
        with pytest.raises(RuntimeError, match="after an application has started"):
            app.add_middleware(Tag, "late", [])


def test_middleware_unpacks_as_class_args_kwargs_and_shows_them() -> None:
    middleware = Middleware(Tag, "m", seen=[])
    cls, args, kwargs = middleware
    assert (cls, args, kwargs) == (Tag, ("m",), {"seen": []})
    assert repr(middleware) == "Middleware(Tag, 'm', seen=[])"


async def test_an_app_without_middleware_builds_no_stack() -> None:
    app = _echo_app()
    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_text("plain")
        assert await ws.receive_text() == "plain"
    assert app.middleware_stack is None
