"""What every security scheme shares: ``auto_error`` and how it says "not authenticated".

A scheme is a callable class: an instance is used as a dependency
(``Depends(HTTPBearer())``) and is called with the connection as ``request``,
an ``HTTPConnection``, so one scheme serves HTTP routes and WebSocket routes
alike. As in FastAPI, a subclass may override ``__call__(self, request)`` and
call ``await super().__call__(request=request)``; on a WebSocket route
``request`` is the ``WebSocket``.
"""

from __future__ import annotations

from trioapi.exceptions import HTTPException

__all__ = ["SecurityBase", "get_authorization_scheme_param"]


class SecurityBase:
    """Base of the security schemes.

    ``auto_error=True`` (the default) makes a missing credential an
    ``HTTPException(401)``: on an HTTP route the client gets 401, on a WebSocket
    route the handshake is denied with 401 before any handler code runs.
    ``auto_error=False`` makes it ``None`` instead, so several schemes can be
    tried one after another.
    """

    #: The ``WWW-Authenticate`` challenge sent with a 401; subclasses set it.
    challenge: str = ""

    def __init__(
        self, *, scheme_name: str | None = None, description: str | None = None, auto_error: bool = True
    ):
        self.scheme_name = scheme_name or type(self).__name__
        self.description = description
        self.auto_error = auto_error

    def make_authenticate_headers(self) -> dict[str, str]:
        """The headers of the 401: ``WWW-Authenticate`` with this scheme's challenge."""
        return {"WWW-Authenticate": self.challenge}

    def make_not_authenticated_error(self, detail: str = "Not authenticated") -> HTTPException:
        """The 401 this scheme raises; override to change status, detail or challenge.

        401 with a ``WWW-Authenticate`` header is what RFC 9110 prescribes and what
        FastAPI raises since 0.12x for every scheme (it used 403 before); FastAPI
        documents overriding this method to go back to 403.
        """
        return HTTPException(status_code=401, detail=detail, headers=self.make_authenticate_headers())

    def missing_credentials(self) -> None:
        """Called when the credential is missing: raise the 401 if ``auto_error``, else return."""
        if self.auto_error:
            raise self.make_not_authenticated_error()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scheme_name={self.scheme_name!r}, auto_error={self.auto_error!r})"


def get_authorization_scheme_param(authorization: str | None) -> tuple[str, str]:
    """Split an ``Authorization`` value into ``(scheme, parameter)``; ``("", "")`` when absent.

    FastAPI's ``fastapi.security.utils.get_authorization_scheme_param``.
    """
    if not authorization:
        return "", ""
    scheme, _, param = authorization.strip().partition(" ")
    return scheme, param.strip()
