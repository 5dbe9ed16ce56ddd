"""HTTP authentication schemes read from the ``Authorization`` header: Bearer, Basic, Digest.

Browsers cannot set headers on a WebSocket handshake (the JavaScript
``WebSocket`` API has no parameter for them), so these schemes serve
non-browser clients and HTTP routes; see ``APIKeyQuery``, ``APIKeyCookie`` and
``APIKeySubprotocol`` for browsers.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from typing import Any

import attrs

from trioapi.exceptions import HTTPException
from trioapi.requests import HTTPConnection
from trioapi.security.base import SecurityBase, get_authorization_scheme_param

__all__ = [
    "HTTPAuthorizationCredentials",
    "HTTPBase",
    "HTTPBasic",
    "HTTPBasicCredentials",
    "HTTPBearer",
    "HTTPDigest",
]


class _Credentials:
    """What the credential classes share: FastAPI's are pydantic models, with ``model_dump``."""

    __slots__ = ()

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict (``{"scheme": ..., "credentials": ...}``), as pydantic's ``model_dump()``."""
        return attrs.asdict(self)  # type: ignore[arg-type]  # every subclass is an attrs class


@attrs.frozen
class HTTPAuthorizationCredentials(_Credentials):
    """An ``Authorization: <scheme> <credentials>`` header, split."""

    scheme: str
    credentials: str


@attrs.frozen
class HTTPBasicCredentials(_Credentials):
    """The user name and password of an ``Authorization: Basic`` header."""

    username: str
    password: str


class HTTPBase(SecurityBase):
    """Any ``Authorization: <scheme> <credentials>`` header; the base of the HTTP schemes.

    Returns ``HTTPAuthorizationCredentials``. When the header is missing or
    malformed: ``HTTPException(401, "Not authenticated")`` with
    ``WWW-Authenticate: <Scheme>``, or ``None`` with ``auto_error=False``.
    """

    def __init__(
        self,
        *,
        scheme: str,
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(scheme_name=scheme_name, description=description, auto_error=auto_error)
        self.scheme = scheme
        self.challenge = scheme.title()

    def _credentials(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        """The header split into scheme and credentials, or ``None`` when absent or incomplete."""
        scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
        return HTTPAuthorizationCredentials(scheme, credentials) if scheme and credentials else None

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        """The credentials of the connection's ``Authorization`` header."""
        found = self._credentials(request)
        if found is None:
            self.missing_credentials()
        return found


class _SchemeOnly(HTTPBase):
    """An ``HTTPBase`` that also requires the header's scheme to be its own (any case)."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        """The credentials, when the header uses this scheme."""
        found = self._credentials(request)
        if found is None or found.scheme.lower() != self.scheme:
            self.missing_credentials()
            return None
        return found


class HTTPBearer(_SchemeOnly):
    """``Authorization: Bearer <token>``; the token is in ``.credentials`` of the result.

    A missing header, another scheme or an empty token: 401 "Not authenticated"
    with ``WWW-Authenticate: Bearer`` (``None`` with ``auto_error=False``).
    Checking the token itself is the job of the dependency that uses this one.
    """

    def __init__(
        self,
        *,
        bearerFormat: str | None = None,  # FastAPI's spelling, kept for ports
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(
            scheme="bearer", scheme_name=scheme_name, description=description, auto_error=auto_error
        )
        self.bearer_format = bearerFormat


class HTTPDigest(_SchemeOnly):
    """``Authorization: Digest ...``, split but not verified (a stub for a real Digest check).

    Missing or another scheme: 401 with ``WWW-Authenticate: Digest``.
    """

    def __init__(
        self, *, scheme_name: str | None = None, description: str | None = None, auto_error: bool = True
    ) -> None:
        super().__init__(
            scheme="digest", scheme_name=scheme_name, description=description, auto_error=auto_error
        )


class HTTPBasic(HTTPBase):
    """``Authorization: Basic base64(user:password)``, decoded into ``HTTPBasicCredentials``.

    Missing or another scheme: 401 "Not authenticated" (``None`` with
    ``auto_error=False``). A Basic header that does not decode is 401 "Invalid
    authentication credentials" even with ``auto_error=False``: the client did
    try Basic, and got it wrong. The challenge is ``Basic``, or ``Basic
    realm="<realm>"`` when a realm is given. Compare passwords with
    ``secrets.compare_digest``.
    """

    def __init__(
        self,
        *,
        scheme_name: str | None = None,
        realm: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(
            scheme="basic", scheme_name=scheme_name, description=description, auto_error=auto_error
        )
        self.realm = realm
        self.challenge = f'Basic realm="{realm}"' if realm else "Basic"

    async def __call__(self, request: HTTPConnection) -> HTTPBasicCredentials | None:  # type: ignore[override]
        """The decoded user name and password."""
        found = self._credentials(request)
        if found is None or found.scheme.lower() != "basic":
            self.missing_credentials()
            return None
        try:
            decoded = b64decode(found.credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise self._invalid() from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise self._invalid()
        return HTTPBasicCredentials(username, password)

    def _invalid(self) -> HTTPException:
        return self.make_not_authenticated_error("Invalid authentication credentials")
