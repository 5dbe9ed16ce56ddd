"""HTTP responses: what a plain HTTP route returns beside the sockets of a real-time app."""

from __future__ import annotations

import json
import mimetypes
import os
import stat
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import format_datetime, formatdate
from http.cookies import SimpleCookie
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import trio

from trioapi._types import Message, Receive, Scope, Send
from trioapi.encoders import json_default

__all__ = [
    "FileResponse",
    "HTMLResponse",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
]


def _header_list(
    headers: Mapping[str, str] | None, media_type: str | None, content_length: int | None
) -> list[tuple[bytes, bytes]]:
    """ASGI header pairs: ``headers``, plus ``Content-Type`` and ``Content-Length`` unless given."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    names = {name for name, _ in raw}
    if media_type is not None and b"content-type" not in names:
        if media_type.startswith("text/") and "charset" not in media_type:
            media_type += "; charset=utf-8"
        raw.append((b"content-type", media_type.encode("latin-1")))
    if content_length is not None and b"content-length" not in names:
        raw.append((b"content-length", str(content_length).encode("latin-1")))
    return raw


def _response_send(scope: Scope, send: Send) -> Send:
    """``send`` for a response to ``scope``: on a WebSocket scope, the denial response's messages.

    A response called with a ``websocket`` scope refuses the handshake with
    itself: its ``http.response.*`` messages go out as the
    ``websocket.http.response.*`` of the ASGI denial-response extension, as
    Starlette's responses do.
    """
    if scope["type"] != "websocket":
        return send

    async def send_denial(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})

    return send_denial


class Response:
    """An HTTP response with a body of bytes, sent whole.

    ``content`` may be ``bytes`` or ``str`` (encoded as UTF-8); subclasses render
    other types. ``Content-Type`` and ``Content-Length`` are added unless given.
    Called with a WebSocket scope, it is sent as a handshake denial (see
    ``WebSocket.send_denial_response``).
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
        self.raw_headers = _header_list(headers, media_type or self.media_type, len(self.body))

    def render(self, content: Any) -> bytes:
        """Turn ``content`` into the body bytes."""
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, str):
            return content.encode("utf-8")
        raise TypeError(f"{type(self).__name__} content must be str or bytes, not {type(content).__name__}")

    def set_cookie(
        self,
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: datetime | str | int | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Add a ``Set-Cookie`` header (Starlette's signature).

        ``expires`` is a ``datetime``, an HTTP date, or seconds from now.
        Browsers send the cookie back with WebSocket handshakes to the same
        site, which is how cookie-authenticated sockets log in (turn on
        ``TrioAPI(allowed_origins=...)`` then).
        """
        cookie: SimpleCookie = SimpleCookie()
        cookie[key] = value
        morsel = cookie[key]
        if max_age is not None:
            morsel["max-age"] = max_age
        if isinstance(expires, datetime):
            morsel["expires"] = format_datetime(expires, usegmt=True)
        elif isinstance(expires, int):
            morsel["expires"] = formatdate(time.time() + expires, usegmt=True)
        elif expires is not None:
            morsel["expires"] = expires
        if path is not None:
            morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite is not None:
            if samesite.lower() not in ("lax", "strict", "none"):
                raise ValueError(f"samesite must be 'lax', 'strict' or 'none', not {samesite!r}")
            morsel["samesite"] = samesite
        self.raw_headers.append((b"set-cookie", morsel.OutputString().encode("latin-1")))

    def delete_cookie(
        self,
        key: str,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Tell the client to drop the cookie ``key`` (``Max-Age=0``, expired)."""
        self.set_cookie(key, "", 0, 0, path, domain, secure, httponly, samesite)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send this response through ASGI (as a denial response on a WebSocket scope)."""
        send = _response_send(scope, send)
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
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False, default=json_default).encode(
            "utf-8"
        )


class RedirectResponse(Response):
    """Send the client to ``url``: 307 by default (method and body kept); 303 turns a POST into a GET."""

    def __init__(self, url: str, status_code: int = 307, headers: Mapping[str, str] | None = None) -> None:
        # Characters a URL may hold stay as they are; spaces and non-ASCII are percent-encoded.
        location = quote(str(url), safe=":/%#?=@[]!$&'()*+,;~")
        super().__init__(None, status_code, {**(headers or {}), "location": location})


class FileResponse(Response):
    """The contents of the file at ``path``, read in chunks in Trio's worker threads.

    The event loop never waits on the disk: the file is stat'ed when the
    response is sent (unless ``stat_result`` is given) and read
    ``chunk_size`` bytes at a time through ``trio.open_file``. ``Content-Type``
    is guessed from ``filename`` or ``path`` (``text/plain`` when unknown);
    ``Content-Length``, ``Last-Modified`` and an ``ETag`` come from the file's
    status. ``filename`` adds ``Content-Disposition`` (``attachment``, or
    ``content_disposition_type``). A ``HEAD`` request (or ``method="HEAD"``)
    gets the headers only. A missing file raises ``RuntimeError`` when sent.
    """

    chunk_size: ClassVar[int] = 64 * 1024

    def __init__(
        self,
        path: str | os.PathLike[str],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        filename: str | None = None,
        stat_result: os.stat_result | None = None,
        method: str | None = None,
        content_disposition_type: str = "attachment",
    ) -> None:
        self.path = os.fspath(path)
        self.status_code = status_code
        self.filename = filename
        self.stat_result = stat_result
        self._head_only = method is not None and method.upper() == "HEAD"
        self.body = b""
        headers = dict(headers or {})
        if filename is not None:
            quoted = quote(filename)
            if quoted != filename:  # RFC 6266: non-ASCII names go in filename*
                disposition = f"{content_disposition_type}; filename*=utf-8''{quoted}"
            else:
                disposition = f'{content_disposition_type}; filename="{filename}"'
            headers.setdefault("content-disposition", disposition)
        if media_type is None:
            media_type = mimetypes.guess_type(filename or self.path)[0] or "text/plain"
        self.raw_headers = _header_list(headers, media_type, None)
        if stat_result is not None:
            self._add_stat_headers(stat_result)

    def _add_stat_headers(self, status: os.stat_result) -> None:
        names = {name for name, _ in self.raw_headers}
        for name, value in [*_file_validators(status), (b"content-length", str(status.st_size).encode())]:
            if name not in names:
                self.raw_headers.append((name, value))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the file through ASGI (as a denial response on a WebSocket scope)."""
        send = _response_send(scope, send)
        if self.stat_result is None:
            try:
                self.stat_result = await trio.Path(self.path).stat()
            except FileNotFoundError:
                raise RuntimeError(f"File at path {self.path} does not exist.") from None
            if not stat.S_ISREG(self.stat_result.st_mode):
                raise RuntimeError(f"File at path {self.path} is not a file.")
            self._add_stat_headers(self.stat_result)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self._head_only or scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        async with await trio.open_file(self.path, "rb") as file:
            while chunk := await file.read(self.chunk_size):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def _file_validators(status: os.stat_result) -> list[tuple[bytes, bytes]]:
    """The ``Last-Modified`` and ``ETag`` headers of a file with this status (for caches and 304s)."""
    etag = f'"{status.st_mtime_ns:x}-{status.st_size:x}"'
    return [
        (b"last-modified", formatdate(status.st_mtime, usegmt=True).encode("latin-1")),
        (b"etag", etag.encode("latin-1")),
    ]
