"""HTTP responses: what a plain HTTP route returns beside the sockets of a real-time app."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from trioapi._types import Receive, Scope, Send

__all__ = ["HTMLResponse", "JSONResponse", "PlainTextResponse", "Response"]


class Response:
    """An HTTP response with a body of bytes, sent whole.

    ``content`` may be ``bytes`` or ``str`` (encoded as UTF-8); subclasses render
    other types. ``Content-Type`` and ``Content-Length`` are added unless given.
    """

    media_type: ClassVar[str | None] = None

    def __init__(
        self,
        content: Any = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = self.render(content)
        media = media_type or self.media_type
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        names = {name for name, _ in raw}
        if media is not None and b"content-type" not in names:
            if media.startswith("text/") and "charset" not in media:
                media += "; charset=utf-8"
            raw.append((b"content-type", media.encode("latin-1")))
        if b"content-length" not in names:
            raw.append((b"content-length", str(len(self.body)).encode("latin-1")))
        self.raw_headers = raw

    def render(self, content: Any) -> bytes:
        """Turn ``content`` into the body bytes."""
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode("utf-8")
        raise TypeError(f"{type(self).__name__} content must be str or bytes, not {type(content).__name__}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send this response through ASGI."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code})"


class PlainTextResponse(Response):
    """A ``text/plain`` response."""

    media_type = "text/plain"


class HTMLResponse(Response):
    """A ``text/html`` response, for the page that opens the app's WebSockets."""

    media_type = "text/html"


class JSONResponse(Response):
    """A JSON response: compact, UTF-8, non-ASCII characters kept."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Serialize ``content`` as JSON."""
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
