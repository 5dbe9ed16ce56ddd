"""Connections built from hand-made ASGI scopes, to test dependency solving without a server."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from trioapi._types import Message
from trioapi.dependencies.analysis import EndpointPlan, analyze_endpoint
from trioapi.dependencies.solving import DependencyExitStack, dependency_exit_stack, solve_dependencies
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


def plan_for(
    endpoint: Any, *, kind: Literal["websocket", "http"] = "websocket", dependencies: Any = ()
) -> EndpointPlan:
    """The plan of ``endpoint`` for a route at ``/ws``."""
    return analyze_endpoint(
        endpoint, path="/ws", path_param_names=frozenset(), kind=kind, dependencies=dependencies
    )


async def solve(
    endpoint: Any,
    target: str = "/ws",
    *,
    overrides: Any = None,
    dependencies: Any = (),
    stack: DependencyExitStack | None = None,
) -> dict[str, Any]:
    """The arguments ``endpoint`` gets for a WebSocket handshake to ``target``.

    Its dependencies' context managers are entered on ``stack`` if given (the
    caller closes it), else on a stack closed before this returns.
    """
    plan = plan_for(endpoint, dependencies=dependencies)
    if stack is not None:
        return await solve_dependencies(plan, websocket_for(target), stack=stack, overrides=overrides or {})
    async with dependency_exit_stack() as own_stack:
        return await solve_dependencies(
            plan, websocket_for(target), stack=own_stack, overrides=overrides or {}
        )
