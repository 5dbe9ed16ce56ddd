"""ASGI middleware around an app: ``TrioAPI(middleware=[Middleware(cls, **options)])``.

Starlette's ``Middleware`` and FastAPI's ``fastapi.middleware.Middleware``
under trioapi's name: ``cls(app, *args, **kwargs)`` wraps the app, and the
first middleware of the list is the outermost. ``app.add_middleware(cls,
**options)`` adds one outside those already there.

Middleware sees every ASGI scope (``http``, ``websocket``, ``lifespan``), on
every server: on hypercorn it gets the server's ``receive`` and ``send``; on
trioapi's own servers, which carry no ASGI messages, it gets those of the
connection's ``WebSocket`` (its ``receive()`` and ``send(message)``, which
speak the same messages). trioapi answers the errors of its handlers and
dependencies itself, inside the middleware (a close code, a denial response,
a log line), so an error reaches a middleware only in tests, where the test
client asks for it to be re-raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ParamSpec, Protocol

__all__ = ["Middleware"]

_P = ParamSpec("_P")

# As permissive as Starlette's: middleware classes annotate their app in many ways.
_ASGIApp = Callable[[Any, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class _MiddlewareFactory(Protocol[_P]):
    def __call__(self, app: _ASGIApp, /, *args: _P.args, **kwargs: _P.kwargs) -> _ASGIApp: ...


class Middleware:
    """A middleware class (or factory) and the arguments to build it with, around the app.

    ``Middleware(cls, *args, **kwargs)`` makes ``cls(app, *args, **kwargs)``
    when the app first runs. It unpacks as ``cls, args, kwargs``, like Starlette's.
    """

    __slots__ = ("args", "cls", "kwargs")

    def __init__(self, cls: _MiddlewareFactory[_P], *args: _P.args, **kwargs: _P.kwargs) -> None:
        self.cls = cls
        self.args = args
        self.kwargs = kwargs

    def __iter__(self) -> Iterator[Any]:
        return iter((self.cls, self.args, self.kwargs))

    def __repr__(self) -> str:
        arguments = [getattr(self.cls, "__name__", repr(self.cls))]
        arguments += [repr(value) for value in self.args]
        arguments += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"Middleware({', '.join(arguments)})"
