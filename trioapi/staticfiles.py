"""Serve a folder of assets (the page, scripts and styles beside a real-time app's sockets).

::

    app.mount("/static", StaticFiles(directory="static"), name="static")

Only files inside the folder are ever served: a path that leads outside it
(``..``, an absolute part, a symlink pointing out) is a 404, as is anything
that is not a regular file. The disk is only touched from Trio's worker
threads, so a slow disk never stalls the event loop.
"""

from __future__ import annotations

import os
import stat
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import trio

from trioapi.datastructures import Headers
from trioapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from trioapi._types import Receive, Scope, Send

__all__ = ["StaticFiles"]

#: The headers a 304 keeps from the response it stands for (RFC 9110, 15.4.5).
_NOT_MODIFIED_HEADERS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary"}
)


class StaticFiles:
    """An ASGI app serving the files under ``directory`` for ``GET`` and ``HEAD``.

    - A file is sent with its content type (guessed from its name),
      ``Content-Length``, ``Last-Modified`` and ``ETag``; a request whose
      ``If-None-Match`` (or else ``If-Modified-Since``) shows the client has
      it already gets ``304 Not Modified`` without a body.
    - A missing file, a directory, or a path leading outside ``directory``
      is ``404``; another method is ``405`` with ``Allow: GET, HEAD``. The
      error bodies are ``{"detail": ...}`` JSON, as for unknown routes.
    - ``html=True`` serves ``index.html`` for a directory (redirecting
      ``/docs`` to ``/docs/`` so relative links work) and ``404.html``, when
      there is one, for a missing file.
    - ``follow_symlink=True`` serves symlinks inside ``directory`` that point
      elsewhere; by default a file must really be inside it.
    - ``check_dir`` (default on) raises ``RuntimeError`` at construction if
      ``directory`` is not an existing directory.

    Starlette's ``packages=`` (assets inside installed packages) is not
    supported: give the package folder as ``directory``.
    """

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str],
        html: bool = False,
        check_dir: bool = True,
        follow_symlink: bool = False,
    ) -> None:
        self.directory = os.fspath(directory)
        self.html = html
        self.follow_symlink = follow_symlink
        if check_dir and not os.path.isdir(self.directory):
            raise RuntimeError(f"Directory '{self.directory}' does not exist")
        # Resolved once: what every looked-up file must be inside.
        self._root = os.path.realpath(self.directory)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (HTTP scopes only)."""
        if scope["type"] != "http":
            raise RuntimeError(f"StaticFiles serves HTTP requests, not {scope['type']!r} scopes")
        response = await self.get_response(scope["path"], scope)
        await response(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The response for ``path`` (relative to the mount point) in ``scope``."""
        if scope["method"] not in ("GET", "HEAD"):
            return JSONResponse({"detail": "Method Not Allowed"}, 405, headers={"allow": "GET, HEAD"})
        found = await trio.to_thread.run_sync(self._lookup, path)
        if found is not None:
            full_path, status, is_index = found
            if is_index and not path.endswith("/"):
                # /docs serves docs/index.html only as /docs/, so its relative links resolve.
                return RedirectResponse(_with_slash(scope))
            return self._file_response(full_path, status, 200, scope)
        if self.html:
            not_found = await trio.to_thread.run_sync(self._lookup, "/404.html")
            if not_found is not None and not not_found[2]:
                return FileResponse(not_found[0], 404, stat_result=not_found[1], method=scope["method"])
        return JSONResponse({"detail": "Not Found"}, 404)

    def _lookup(self, path: str) -> tuple[str, os.stat_result, bool] | None:
        """``(file, its status, served as a directory's index)`` for ``path``, or None (404).

        Runs in a worker thread: ``realpath`` and ``stat`` touch the disk.
        """
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if any(part == ".." or "\0" in part or os.sep in part for part in parts):
            return None
        joined = os.path.join(self._root, *parts)
        full = os.path.abspath(joined) if self.follow_symlink else os.path.realpath(joined)
        if os.path.commonpath([full, self._root]) != self._root:
            return None
        try:
            status = os.stat(full)
            if stat.S_ISDIR(status.st_mode) and self.html:
                full = os.path.join(full, "index.html")
                status = os.stat(full)
                return (full, status, True) if stat.S_ISREG(status.st_mode) else None
        except OSError:  # missing, unreadable, a name too long: not something we serve
            return None
        return (full, status, False) if stat.S_ISREG(status.st_mode) else None

    def _file_response(self, full_path: str, status: os.stat_result, code: int, scope: Scope) -> Response:
        response = FileResponse(full_path, code, stat_result=status, method=scope["method"])
        if _client_has_it(Headers(raw=scope.get("headers", ())), Headers(raw=response.raw_headers)):
            kept = [(name, value) for name, value in response.raw_headers if name in _NOT_MODIFIED_HEADERS]
            not_modified = Response(status_code=304)
            not_modified.raw_headers = kept
            return not_modified
        return response


def _client_has_it(request: Headers, response: Headers) -> bool:
    """Whether the request's validators match the file's (``If-None-Match`` wins, RFC 9110, 13.2.2)."""
    if_none_match = request.get("if-none-match")
    if if_none_match is not None:
        etag = response.get("etag", "")
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    if_modified_since = request.get("if-modified-since")
    last_modified = response.get("last-modified")
    if if_modified_since is None or last_modified is None:
        return False
    try:
        return parsedate_to_datetime(if_modified_since) >= parsedate_to_datetime(last_modified)
    except (TypeError, ValueError):  # not a date: as if the header were absent
        return False


def _with_slash(scope: Scope) -> str:
    """The request's own URL path (with its mount prefix and query) plus a trailing slash."""
    url: str = scope.get("root_path", "") + scope["path"] + "/"
    query: bytes = scope.get("query_string", b"")
    return url + ("?" + query.decode("latin-1") if query else "")
