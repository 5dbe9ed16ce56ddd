"""Exceptions that application code raises to say how a connection should end.

``HTTPException`` and ``WebSocketException`` are the two a handler or dependency
raises on purpose; the validation errors are raised by trioapi itself when a
parameter cannot be converted, and say which one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "FastAPIError",
    "HTTPException",
    "LifespanError",
    "RequestValidationError",
    "RouteDefinitionError",
    "TrioAPIError",
    "ValidationError",
    "WebSocketException",
    "WebSocketRequestValidationError",
]


class HTTPException(Exception):
    """End a request, or deny a WebSocket handshake, with an HTTP status.

    On an HTTP route the client gets ``status_code`` with the JSON body
    ``{"detail": detail}`` and ``headers``. Raised while a WebSocket is still
    connecting, the same response is sent as a handshake denial where the server
    supports it (close 1008 elsewhere); raised after ``accept``, the WebSocket is
    closed with 1008 and ``detail`` as its reason.
    """

    def __init__(
        self,
        status_code: int,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if detail is None:
            from http import HTTPStatus

            try:
                detail = HTTPStatus(status_code).phrase
            except ValueError:
                detail = ""
        super().__init__(status_code, detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = dict(headers) if headers is not None else None

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class WebSocketException(Exception):
    """Close the WebSocket with ``code`` and ``reason``.

    Raised before ``accept`` the handshake is rejected instead (HTTP 403 on the
    wire, since a close code cannot be sent to a client that was never accepted).
    """

    def __init__(self, code: int, reason: str | None = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason or ""

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


class ValidationError(Exception):
    """One or more request parameters failed to convert or validate.

    ``errors()`` lists each failure as a dict with ``loc`` (for example
    ``("query", "user_id")``), ``msg`` and ``type``, the shape FastAPI uses.
    """

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        self._errors = [dict(error) for error in errors]
        super().__init__(self._errors)

    def errors(self) -> list[dict[str, Any]]:
        """The individual failures, in the order they were found."""
        return list(self._errors)

    def short_reason(self) -> str:
        """A one-line summary naming the first failing parameter, for a close reason."""
        if not self._errors:
            return "invalid request"
        first = self._errors[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        more = f" (+{len(self._errors) - 1} more)" if len(self._errors) > 1 else ""
        return f"{where}: {first.get('msg', 'invalid')}{more}"

    def __str__(self) -> str:
        lines = [f"{len(self._errors)} validation error(s):"]
        for error in self._errors:
            where = ".".join(str(part) for part in error.get("loc", ()))
            lines.append(f"  {where}: {error.get('msg', '')}")
        return "\n".join(lines)


class RequestValidationError(ValidationError):
    """An HTTP request's parameters or body were invalid (the client gets 422)."""


class WebSocketRequestValidationError(ValidationError):
    """A WebSocket handshake's parameters were invalid (closed with 1008 before accept)."""


class TrioAPIError(RuntimeError):
    """An error in how trioapi is used (FastAPI's ``FastAPIError``); ``RouteDefinitionError`` is one."""


#: FastAPI's name for ``TrioAPIError``, so that ported code and tests catch what they caught before.
FastAPIError = TrioAPIError


class RouteDefinitionError(TrioAPIError, TypeError):
    """A route or dependency was declared in a shape trioapi cannot serve.

    Raised when the route is added (not when a client connects), with a message
    naming the function and parameter and saying what to write instead: a
    parameter nothing can supply, a blocking sync generator dependency, an
    annotation no converter exists for. It is a ``TrioAPIError`` (``FastAPIError``),
    as FastAPI's declaration errors are, and a ``TypeError``.
    """


class LifespanError(RuntimeError):
    """The app's lifespan startup or shutdown failed; the message is the app's own.

    ``trioapi.serve`` raises it when startup fails (so the server never starts
    listening), and so does ``TestClient`` on entering.
    """
