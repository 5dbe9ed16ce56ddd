"""The ``Origin`` check that protects cookie-authenticated WebSockets from other sites.

Browsers attach cookies to a WebSocket handshake whatever page opened it, and
the same-origin policy and CORS do not apply to WebSockets. So if a socket is
authenticated by a cookie (or by HTTP Basic, or a client certificate: anything
the browser sends by itself), a page on any other site can open it with the
user's credentials and talk to it: cross-site WebSocket hijacking (CSWSH).

Turn on an allow-list (``TrioAPI(allowed_origins=[...])``, or per route) when a
WebSocket route relies on such ambient credentials. Routes that authenticate
with a token the page must pass explicitly (query parameter, subprotocol, first
message) are not exposed this way, though an allow-list does no harm there.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from trioapi.datastructures import Headers

__all__ = ["normalize_origin", "normalize_origins", "origin_allowed"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a trailing ``/`` or the scheme's default port.

    Opaque origins (``null``) and text that is not an origin come back lower-cased and stripped.
    """
    text = origin.strip().rstrip("/").lower()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    if not parts.scheme or not parts.hostname:
        return text
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or _DEFAULT_PORTS.get(parts.scheme) == port:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _matches(origin: str, entry: str) -> bool:
    """An allow-list entry matches itself, or any subdomain if written ``scheme://*.domain``."""
    if origin == entry:
        return True
    scheme, sep, host = entry.partition("://*.")
    return bool(sep) and origin.startswith(f"{scheme}://") and origin.endswith(f".{host}")


def origin_allowed(headers: Headers, allowed: frozenset[str] | None) -> bool:
    """Whether a handshake with these headers may proceed under the allow-list ``allowed``.

    ``allowed=None`` turns the check off. ``"*"`` allows every origin.
    ``"https://*.example.com"`` allows every subdomain of example.com (not
    example.com itself). Entries are compared after ``normalize_origin``, so
    ``https://Example.com:443/`` equals ``https://example.com``. The literal
    origin ``null`` (sandboxed frames, ``file:`` pages) passes only if listed.

    A handshake without an ``Origin`` header is allowed: browsers always send
    one on WebSocket handshakes, so its absence means a non-browser client,
    which holds no other site's cookies and could set any ``Origin`` it liked.
    """
    if allowed is None or "*" in allowed:
        return True
    origin = headers.get("origin")
    if origin is None:
        return True
    origin = normalize_origin(origin)
    if origin in allowed:
        return True
    return any(_matches(origin, normalize_origin(entry)) for entry in allowed)


def normalize_origins(origins: Iterable[str]) -> frozenset[str]:
    """An allow-list in the form ``origin_allowed`` compares fastest (optional)."""
    return frozenset(normalize_origin(origin) for origin in origins)
