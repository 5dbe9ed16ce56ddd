"""API keys read from a header, the query string, a cookie, or the WebSocket subprotocol list.

Each returns the key as a ``str``; checking it is the job of the dependency that
uses the scheme. A missing key is ``HTTPException(401, "Not authenticated")``
with ``WWW-Authenticate: APIKey`` (FastAPI's behaviour since 0.12x: RFC 9110
requires a challenge with 401, and ``APIKey`` is the conventional one; older
FastAPI sent 403), or ``None`` with ``auto_error=False``.

Which one for a WebSocket? Browsers cannot set headers on a WebSocket
handshake, so:

- ``APIKeyHeader``: for non-browser clients (services, CLIs, mobile apps).
- ``APIKeyQuery``: works everywhere, but URLs end up in server and proxy access
  logs and in browser history; use short-lived, single-purpose tokens.
- ``APIKeyCookie``: the browser sends it by itself (set it ``HttpOnly``,
  ``Secure``, ``SameSite``), which is also the danger: any site can open a
  WebSocket to yours and the cookie goes along (cross-site WebSocket hijacking),
  so pair it with an ``Origin`` allow-list (``trioapi.security.origin``).
- ``APIKeySubprotocol``: a token carried in ``Sec-WebSocket-Protocol``, the one
  header a browser lets a page set; kept out of URLs and logs of query strings.
"""

from __future__ import annotations

from trioapi.requests import HTTPConnection
from trioapi.security.base import SecurityBase

__all__ = ["APIKeyBase", "APIKeyCookie", "APIKeyHeader", "APIKeyQuery", "APIKeySubprotocol"]


class APIKeyBase(SecurityBase):
    """What the API key schemes share: the ``APIKey`` challenge and the empty-means-missing rule."""

    challenge = "APIKey"

    def __init__(
        self,
        *,
        name: str,
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(scheme_name=scheme_name, description=description, auto_error=auto_error)
        self.name = name

    def check_api_key(self, api_key: str | None) -> str | None:
        """``api_key`` if present and non-empty; otherwise 401 (or ``None`` without ``auto_error``)."""
        if not api_key:
            self.missing_credentials()
            return None
        return api_key


class APIKeyHeader(APIKeyBase):
    """An API key in the header ``name`` (matched without regard to case)."""

    async def __call__(self, request: HTTPConnection) -> str | None:
        """The key, from the header."""
        return self.check_api_key(request.headers.get(self.name))


class APIKeyQuery(APIKeyBase):
    """An API key in the query parameter ``name`` (``/ws?token=...``)."""

    async def __call__(self, request: HTTPConnection) -> str | None:
        """The key, from the query string."""
        return self.check_api_key(request.query_params.get(self.name))


class APIKeyCookie(APIKeyBase):
    """An API key in the cookie ``name``. Turn on an ``Origin`` allow-list for WebSocket routes."""

    async def __call__(self, request: HTTPConnection) -> str | None:
        """The key, from the cookie."""
        return self.check_api_key(request.cookies.get(self.name))


class APIKeySubprotocol(APIKeyBase):
    """A token offered as a WebSocket subprotocol: ``<prefix><token>``.

    The browser side::

        new WebSocket(url, ["chat.v1", "access_token." + token])

    and the handler accepts the *other* subprotocol, never the token::

        await websocket.accept(subprotocol="chat.v1")

    Trade-offs: the token never appears in a URL (so not in access logs or
    history) and no cookie is involved (so no cross-site hijacking); but it
    must consist of HTTP token characters (letters, digits and
    ``!#$%&'*+-.^_`|~``: base64url without padding fits, standard base64 with
    ``/`` and ``=`` does not), the client must also offer a real subprotocol
    for the server to choose (a browser fails the handshake if the server
    chooses none of those it offered), and the header still travels with the
    handshake, so servers that log all headers will log it.

    ``name`` is the prefix (default ``"access_token."``). The offered list is the
    WebSocket scope's ``subprotocols``; on an HTTP route, the
    ``Sec-WebSocket-Protocol`` header.
    """

    def __init__(
        self,
        *,
        name: str = "access_token.",
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(name=name, scheme_name=scheme_name, description=description, auto_error=auto_error)

    async def __call__(self, request: HTTPConnection) -> str | None:
        """The token from the first offered subprotocol that starts with the prefix."""
        for offered in _offered_subprotocols(request):
            if offered.startswith(self.name):
                return self.check_api_key(offered[len(self.name) :])
        return self.check_api_key(None)


def _offered_subprotocols(connection: HTTPConnection) -> list[str]:
    """The subprotocols of a WebSocket scope, else those of the header (an HTTP request)."""
    offered: list[str] | None = connection.scope.get("subprotocols")
    if offered is not None:
        return offered
    headers = connection.headers.getlist("sec-websocket-protocol")
    return [item.strip() for header in headers for item in header.split(",")]
