"""What HTTP requests and WebSocket handshakes have in common, and the HTTP ``Request``.

``HTTPConnection`` is the base of both ``Request`` and ``WebSocket``: a dependency
that only needs headers, cookies or the query string can ask for it and then
serves HTTP routes and WebSocket routes alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from trioapi.datastructures import URL, Address, Headers, QueryParams, State, URLPath, parse_cookie_header

if TYPE_CHECKING:
    from trioapi._types import Receive, Scope

__all__ = ["HTTPConnection", "Request"]


class HTTPConnection(Mapping[str, Any]):
    """The handshake of a connection: URL, headers, query, cookies, client and state.

    Every property is computed from the ASGI ``scope`` on first use and cached.
    The connection is also a read-only mapping over its scope, as in Starlette:
    ``websocket["type"]``, ``websocket["subprotocols"]``, ``len(websocket)``,
    ``dict(websocket)``. Two connections are equal only if they are the same
    object, and each is hashable, whatever their scopes hold: connections are
    dict keys and set members (rooms, registries).
    """

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def __getitem__(self, key: str) -> Any:
        return self.scope[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scope)

    def __len__(self) -> int:
        return len(self.scope)

    # Mapping compares contents, which would make two connections with equal
    # scopes equal and every connection unhashable: keep object identity.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def app(self) -> Any:
        """The application serving this connection (a ``TrioAPI``)."""
        return self.scope["app"]

    @cached_property
    def url(self) -> URL:
        """The URL the client asked for (``ws``/``wss`` for WebSockets)."""
        return URL.from_scope(self.scope)

    @cached_property
    def headers(self) -> Headers:
        """The request or handshake headers, matched without regard to case."""
        return Headers(raw=self.scope.get("headers", ()))

    @cached_property
    def query_params(self) -> QueryParams:
        """The query string as a multi-map (``getlist`` for repeated keys)."""
        return QueryParams(self.scope.get("query_string", b""))

    @property
    def path_params(self) -> dict[str, Any]:
        """The path parameters of the matched route, already converted (``{"client_id": 7}``)."""
        params: dict[str, Any] = self.scope.get("path_params", {})
        return params

    @cached_property
    def cookies(self) -> dict[str, str]:
        """Cookies from every ``Cookie`` header, parsed leniently."""
        cookies: dict[str, str] = {}
        for value in self.headers.getlist("cookie"):
            cookies.update(parse_cookie_header(value))
        return cookies

    @property
    def client(self) -> Address | None:
        """The peer's ``Address(host, port)``, or ``None`` when the server does not say."""
        client = self.scope.get("client")
        return None if client is None else Address(client[0], client[1])

    @cached_property
    def state(self) -> State:
        """A per-connection attribute namespace, seeded with the lifespan's state."""
        return State(self.scope.setdefault("state", {}))

    def url_for(self, name: str, /, **path_params: Any) -> str:
        """The absolute URL of the route called ``name`` (``ws://`` for WebSocket routes).

        Routes are looked up in the router that routed this connection
        (``scope["router"]``, which Starlette's routers set), else in the app.
        """
        routes = self.scope.get("router") or self.scope.get("app")
        if routes is None:
            raise RuntimeError("url_for() needs the app or router serving this connection (scope['app'])")
        path: URLPath = routes.url_path_for(name, **path_params)
        base = URL(self.url.scheme, self.url.host, self.url.port, self.scope.get("root_path", ""))
        # As a string, which a Starlette router's URLPath takes too.
        return str(path.make_absolute_url(str(base)))


class Request(HTTPConnection):
    """An HTTP request: method, and the body read on demand."""

    def __init__(self, scope: Scope, receive: Receive | None = None) -> None:
        super().__init__(scope)
        self._receive = receive
        self._body: bytes | None = None

    @property
    def method(self) -> str:
        """The HTTP method, upper case."""
        method: str = self.scope["method"]
        return method

    async def body(self) -> bytes:
        """The whole request body (read once, then cached)."""
        if self._body is None:
            if self._receive is None:
                raise RuntimeError("This Request was built without a receive callable; it has no body")
            chunks: list[bytes] = []
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(await self.body())

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"
