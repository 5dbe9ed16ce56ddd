"""Read-only views of what a client sent in its handshake or request.

Each class wraps the raw ASGI value and decodes lazily, so a handler that never
looks at its headers or query string never pays for parsing them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlencode

import attrs

__all__ = [
    "URL",
    "Address",
    "Headers",
    "QueryParams",
    "State",
    "URLPath",
    "parse_cookie_header",
]


class Address(NamedTuple):
    """The network address of a peer: ``(host, port)``."""

    host: str
    port: int


@attrs.frozen
class URL:
    """The parts of a URL, and the URL itself as ``str(url)``.

    A WebSocket's URL has the scheme ``ws`` or ``wss``; ``port`` is ``None``
    when it is the default for the scheme.
    """

    scheme: str
    host: str
    port: int | None
    path: str
    query: str = ""

    _DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> URL:
        """Build the URL a client used from an ASGI connection scope.

        The public path is ``root_path`` followed by ``path``, unless ``path``
        already starts with ``root_path``: servers and routers disagree on whether
        ``path`` includes it (Starlette's mounts and uvicorn keep the full path
        there; a proxy that strips the prefix does not), and Starlette reads a
        ``path`` under ``root_path`` as the full path too.
        """
        scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
        server = scope.get("server")
        host, port = (server[0], server[1]) if server else ("localhost", None)
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host, port = _split_host(value.decode("latin-1"))
                break
        if port == cls._DEFAULT_PORTS.get(scheme):
            port = None
        path = scope["path"]
        root_path = scope.get("root_path", "")
        if root_path and not (
            path.startswith(root_path) and path[len(root_path) : len(root_path) + 1] in ("", "/")
        ):
            path = root_path + path
        query = scope.get("query_string", b"").decode("latin-1")
        return cls(scheme=scheme, host=host, port=port, path=path, query=query)

    @property
    def netloc(self) -> str:
        """``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.netloc}{self.path}{query}"


def _split_host(text: str) -> tuple[str, int | None]:
    """Split a ``Host`` header into host and port; IPv6 literals keep their brackets."""
    if text.startswith("["):
        host, _, rest = text.partition("]")
        host, port_text = host + "]", rest.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    return host, int(port_text) if port_text.isdigit() else None


class URLPath(str):
    """A path produced by ``url_path_for``; ``protocol`` says if it is ``"websocket"`` or ``"http"``."""

    protocol: str

    def __new__(cls, path: str, protocol: str = "") -> URLPath:
        """Wrap ``path``, remembering which protocol its route serves."""
        self = super().__new__(cls, path)
        self.protocol = protocol
        return self

    def make_absolute_url(self, base_url: URL | str) -> str:
        """Join this path to ``base_url``, switching http(s) to ws(s) for WebSocket routes."""
        base = str(base_url).rstrip("/")
        if self.protocol == "websocket":
            base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return base + str(self)


class _MultiMap(Mapping[str, str]):
    """An immutable multi-map: ``m[key]`` is the last value, ``getlist(key)`` all of them."""

    __slots__ = ("_items", "_last")

    _items: list[tuple[str, str]]
    _last: dict[str, str]

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._items = list(items)
        self._last = dict(self._items)

    def getlist(self, key: str) -> list[str]:
        """Every value given for ``key``, in order (empty when there is none)."""
        return [value for name, value in self._items if name == key]

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(key, value)`` pair, in order, repeats included."""
        return list(self._items)

    def __getitem__(self, key: str) -> str:
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _MultiMap):
            return sorted(self._items) == sorted(other._items)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class QueryParams(_MultiMap):
    """The query string as a multi-map: ``params["room"]``, ``params.getlist("tag")``."""

    __slots__ = ()

    def __init__(self, query: str | bytes | Sequence[tuple[str, str]] = "") -> None:
        if isinstance(query, bytes):
            query = query.decode("latin-1")
        if isinstance(query, str):
            super().__init__(parse_qsl(query, keep_blank_values=True))
        else:
            super().__init__(query)

    def __str__(self) -> str:
        return urlencode(self._items)


class Headers(_MultiMap):
    """Handshake or request headers; keys are matched without regard to case.

    Built from the ASGI list of ``(bytes, bytes)`` pairs, or from a mapping of
    ``str`` to ``str``.
    """

    __slots__ = ("raw",)

    raw: list[tuple[bytes, bytes]]

    def __init__(
        self,
        headers: Mapping[str, str] | Sequence[tuple[bytes, bytes]] | None = None,
        *,
        raw: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if raw is None:
            if headers is None:
                raw = []
            elif isinstance(headers, Mapping):
                raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            else:
                raw = list(headers)
        self.raw = list(raw)
        super().__init__([(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in self.raw])

    def getlist(self, key: str) -> list[str]:
        """Every value of header ``key`` (any case), in order."""
        return super().getlist(key.lower())

    def __getitem__(self, key: str) -> str:
        return self._last[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._last


def parse_cookie_header(value: str) -> dict[str, str]:
    """Parse a ``Cookie`` header leniently, the way browsers send it.

    ``http.cookies.SimpleCookie`` rejects the whole header on one odd cookie;
    a framework must not lose a session cookie because of a neighbour.
    """
    cookies: dict[str, str] = {}
    for chunk in value.split(";"):
        name, sep, val = chunk.partition("=")
        name, val = (name.strip(), val.strip()) if sep else ("", chunk.strip())
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        if name or val:
            cookies[name] = unquote(val)
    return cookies


class State:
    """An attribute namespace: ``websocket.state.user = ...``.

    Reading an attribute that was never set raises ``AttributeError`` that names it.
    """

    __slots__ = ("_state",)

    _state: dict[str, Any]

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_state", {} if state is None else state)

    def __setattr__(self, name: str, value: Any) -> None:
        self._state[name] = value

    def __getattr__(self, name: str) -> Any:
        try:
            return self._state[name]
        except KeyError:
            raise AttributeError(f"State has no attribute {name!r}; set it first") from None

    def __delattr__(self, name: str) -> None:
        del self._state[name]

    def __repr__(self) -> str:
        return f"State({self._state!r})"
