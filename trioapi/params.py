"""Markers that say where an endpoint or dependency parameter comes from.

Each marker is used either as a parameter's default or inside ``Annotated``::

    async def chat(room: str = Query(..., description="Chat room name")): ...
    async def chat(room: Annotated[str, Query(description="Chat room name")]): ...

``...`` (or no default at all) means the parameter is required. The markers only
describe; ``trioapi.dependencies`` reads them once, when the route is declared,
and builds the converters that run per connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

__all__ = [
    "Body",
    "Cookie",
    "DependencyScope",
    "Depends",
    "Header",
    "Param",
    "Path",
    "Query",
    "Security",
]

# Markers stand in for the parameter's real value (``token: str = Depends(auth)``),
# so type checkers must accept a marker wherever any type is expected. Deriving
# from ``Any`` for the type checker only does exactly that; at runtime the base
# is plain ``object`` and the markers are ordinary attrs classes.
if TYPE_CHECKING:
    _StandsForAnyValue = Any
else:
    _StandsForAnyValue = object

#: Where a parameter's value is read from.
Location = Literal["query", "path", "header", "cookie", "body"]


@attrs.frozen(eq=False)
class Param(_StandsForAnyValue):  # type: ignore[misc]
    """What the value markers share: a default, an alias, a description and constraints.

    ``default=...`` means required. ``gt``/``ge``/``lt``/``le`` bound numbers,
    ``min_length``/``max_length`` bound strings, bytes and lists, and ``pattern``
    is a regular expression a string must contain a match of (``re.search``;
    anchor it with ``^...$`` to match the whole value).
    """

    #: Which part of the request the value comes from; set by each subclass.
    location: ClassVar[Location]

    default: Any = ...
    alias: str | None = attrs.field(default=None, kw_only=True)
    description: str | None = attrs.field(default=None, kw_only=True)
    gt: float | None = attrs.field(default=None, kw_only=True)
    ge: float | None = attrs.field(default=None, kw_only=True)
    lt: float | None = attrs.field(default=None, kw_only=True)
    le: float | None = attrs.field(default=None, kw_only=True)
    min_length: int | None = attrs.field(default=None, kw_only=True)
    max_length: int | None = attrs.field(default=None, kw_only=True)
    pattern: str | None = attrs.field(default=None, kw_only=True)

    @property
    def required(self) -> bool:
        """``True`` when the marker itself carries no default (``...``)."""
        return self.default is ...


@attrs.frozen(eq=False)
class Query(Param):
    """A value from the query string (``?room=lobby``); ``list[X]`` collects repeated keys."""

    location: ClassVar[Location] = "query"


@attrs.frozen(eq=False)
class Path(Param):
    """A value from the path template (``/rooms/{room_id}``); always required."""

    location: ClassVar[Location] = "path"


@attrs.frozen(eq=False)
class Header(Param):
    """A value from a request or handshake header.

    The header's name is the parameter's name with ``_`` turned into ``-``
    (``x_token`` reads ``X-Token``) unless ``convert_underscores=False`` or an
    ``alias`` is given. Header names match without regard to case; ``list[X]``
    collects every occurrence of a repeated header.
    """

    location: ClassVar[Location] = "header"

    convert_underscores: bool = attrs.field(default=True, kw_only=True)


@attrs.frozen(eq=False)
class Cookie(Param):
    """A value from the ``Cookie`` header, by cookie name (the parameter's name or ``alias``)."""

    location: ClassVar[Location] = "cookie"


@attrs.frozen(eq=False)
class Body(Param):
    """A value from an HTTP request's JSON body (HTTP routes only: a WebSocket has no body).

    A single body parameter receives the whole body. With ``embed=True``, or when
    an endpoint has several body parameters, each reads the member of the body's
    JSON object named after it (or its ``alias``).
    """

    location: ClassVar[Location] = "body"

    embed: bool = attrs.field(default=False, kw_only=True)


#: When a dependency's teardown (the code after its ``yield``) runs: ``"function"``
#: right after the endpoint function returns, ``"request"`` once the whole request
#: is over (an HTTP response sent, a WebSocket's final close frame sent).
DependencyScope = Literal["function", "request"]


def _check_scope(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in (None, "function", "request"):
        raise ValueError(f'Depends(scope={value!r}): use "function", "request" or None (the default)')


@attrs.frozen
class Depends(_StandsForAnyValue):  # type: ignore[misc]
    """Call ``dependency`` for each connection and pass in what it returns.

    ``dependency`` may be a coroutine function (awaited), a plain function or
    class (called in a worker thread, so it may block), an async generator
    function or a callable returning an async context manager (entered; the code
    after its ``yield`` runs at teardown), or a sync generator function or
    ``@contextmanager`` function (entered and exited in worker threads). Without
    ``dependency`` the parameter's annotation is called (``db: DB = Depends()``).
    Each dependency runs once per connection however often it is asked for,
    unless ``use_cache=False``.

    ``scope`` says when a ``yield`` dependency is torn down: ``"function"`` as
    soon as the endpoint function returns (before an HTTP response is sent;
    before a WebSocket's final close frame), ``"request"`` (the default for
    ``yield`` dependencies) after the request is over (the response sent; the
    final close frame sent and the connection's tasks ended). A
    ``"request"``-scoped ``yield`` dependency cannot depend on a ``"function"``
    one, which would be gone before it.
    """

    dependency: Callable[..., Any] | None = None
    use_cache: bool = attrs.field(default=True, kw_only=True)
    scope: DependencyScope | None = attrs.field(default=None, kw_only=True, validator=_check_scope)


def _scope_tuple(scopes: Iterable[str] | None) -> tuple[str, ...]:
    return () if scopes is None else tuple(scopes)


@attrs.frozen
class Security(Depends):
    """A ``Depends`` that also asks for OAuth2-style ``scopes``.

    Dependencies below it can take a ``SecurityScopes`` parameter to read every
    scope requested on the way down to them (``trioapi.security.SecurityScopes``).
    Like FastAPI's ``Security``, it takes no ``scope``: a ``yield`` dependency
    behind it is torn down with the request.
    """

    scope: DependencyScope | None = attrs.field(default=None, init=False)
    scopes: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_scope_tuple)
