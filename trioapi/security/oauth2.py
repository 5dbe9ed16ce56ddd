"""OAuth2 tokens read from the ``Authorization`` header, and the ``SecurityScopes`` a dependency can ask for.

trioapi does not issue tokens; these schemes only read the token a client got
from your authorization server, so a dependency can decode and check it, with
the scopes requested by ``Security(..., scopes=[...])``. The flow descriptions
(``tokenUrl``, ``authorizationUrl``, ``scopes``, FastAPI's spellings) are kept as
attributes for your own use; trioapi has no OpenAPI schema to put them in.

Browsers cannot set ``Authorization`` on a WebSocket handshake, so on WebSocket
routes these serve non-browser clients; see ``APIKeyQuery``, ``APIKeyCookie``
and ``APIKeySubprotocol`` for browsers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from trioapi.requests import HTTPConnection
from trioapi.security.base import SecurityBase, get_authorization_scheme_param

__all__ = ["OAuth2", "OAuth2AuthorizationCodeBearer", "OAuth2PasswordBearer", "SecurityScopes"]


def _scope_list(scopes: Iterable[str] | None) -> list[str]:
    return [] if scopes is None else list(scopes)


@attrs.frozen
class SecurityScopes:
    """Every scope asked for by the ``Security`` markers between the endpoint and this dependency.

    Declare a parameter ``security_scopes: SecurityScopes`` in a dependency to
    receive it; ``scopes`` lists them outermost first, ``scope_str`` joins them
    with spaces (the form of a ``WWW-Authenticate: Bearer scope="..."`` challenge).
    """

    scopes: list[str] = attrs.field(factory=list, converter=_scope_list)

    @property
    def scope_str(self) -> str:
        """The scopes separated by spaces."""
        return " ".join(self.scopes)


class OAuth2(SecurityBase):
    """Any OAuth2 flow: returns the whole ``Authorization`` header value, unparsed.

    The base of the OAuth2 schemes, and a scheme of its own when a dependency
    parses the header itself (FastAPI's ``OAuth2``). Missing header: 401 "Not
    authenticated" with ``WWW-Authenticate: Bearer`` (``None`` with
    ``auto_error=False``). ``flows`` describes the flows, as in an OpenAPI
    ``flows`` object (``{"password": {"tokenUrl": "token", "scopes": {}}}``).
    """

    challenge = "Bearer"

    def __init__(
        self,
        *,
        flows: Mapping[str, Mapping[str, Any]] | None = None,
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(scheme_name=scheme_name, description=description, auto_error=auto_error)
        self.flows = {name: dict(flow) for name, flow in (flows or {}).items()}

    async def __call__(self, request: HTTPConnection) -> str | None:
        """The ``Authorization`` header as sent."""
        authorization = request.headers.get("authorization")
        if not authorization:
            self.missing_credentials()
            return None
        return authorization

    def _bearer_token(self, request: HTTPConnection) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header; 401 (or ``None``) otherwise."""
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() != "bearer" or not token:
            self.missing_credentials()
            return None
        return token


class OAuth2PasswordBearer(OAuth2):
    """The bearer token of the OAuth2 password flow, from ``Authorization: Bearer <token>``.

    Returns the token as a ``str``. Missing, another scheme, or an empty token:
    401 "Not authenticated" with ``WWW-Authenticate: Bearer`` (``None`` with
    ``auto_error=False``). ``tokenUrl`` is where clients get a token (an
    endpoint you write); ``refreshUrl`` and ``scopes`` describe the flow.
    """

    def __init__(
        self,
        tokenUrl: str,  # FastAPI's spellings, kept for ports
        scheme_name: str | None = None,
        scopes: Mapping[str, str] | None = None,
        description: str | None = None,
        auto_error: bool = True,
        refreshUrl: str | None = None,
    ) -> None:
        self.token_url = tokenUrl
        self.refresh_url = refreshUrl
        self.scopes = dict(scopes or {})
        flow = {"tokenUrl": tokenUrl, "refreshUrl": refreshUrl, "scopes": self.scopes}
        super().__init__(
            flows={"password": flow}, scheme_name=scheme_name, description=description, auto_error=auto_error
        )

    async def __call__(self, request: HTTPConnection) -> str | None:
        """The bearer token."""
        return self._bearer_token(request)


class OAuth2AuthorizationCodeBearer(OAuth2):
    """The bearer token of the OAuth2 authorization code flow, from ``Authorization: Bearer <token>``.

    Returns the token as a ``str``; refused like ``OAuth2PasswordBearer``'s.
    ``authorizationUrl`` is where users log in, ``tokenUrl`` where the code is
    exchanged for a token (both usually at your identity provider).
    """

    def __init__(
        self,
        authorizationUrl: str,  # FastAPI's spellings, kept for ports
        tokenUrl: str,
        refreshUrl: str | None = None,
        scheme_name: str | None = None,
        scopes: Mapping[str, str] | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.authorization_url = authorizationUrl
        self.token_url = tokenUrl
        self.refresh_url = refreshUrl
        self.scopes = dict(scopes or {})
        flow = {
            "authorizationUrl": authorizationUrl,
            "tokenUrl": tokenUrl,
            "refreshUrl": refreshUrl,
            "scopes": self.scopes,
        }
        super().__init__(
            flows={"authorizationCode": flow},
            scheme_name=scheme_name,
            description=description,
            auto_error=auto_error,
        )

    async def __call__(self, request: HTTPConnection) -> str | None:
        """The bearer token."""
        return self._bearer_token(request)
