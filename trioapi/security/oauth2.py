"""OAuth2 bearer tokens, and the ``SecurityScopes`` a dependency can ask for.

trioapi does not issue tokens; ``OAuth2PasswordBearer`` only reads the bearer
token a client got from ``tokenUrl`` (an endpoint you write), so a dependency can
decode and check it, with the scopes requested by ``Security(..., scopes=[...])``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from trioapi.requests import HTTPConnection
from trioapi.security.base import SecurityBase, get_authorization_scheme_param

__all__ = ["OAuth2PasswordBearer", "SecurityScopes"]


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


class OAuth2PasswordBearer(SecurityBase):
    """The bearer token of the OAuth2 password flow, from ``Authorization: Bearer <token>``.

    Returns the token as a ``str``. Missing, or another scheme: 401 "Not
    authenticated" with ``WWW-Authenticate: Bearer`` (``None`` with
    ``auto_error=False``). ``tokenUrl`` and ``scopes`` describe the flow; they are
    kept for documentation and are not enforced here.
    """

    challenge = "Bearer"

    def __init__(
        self,
        tokenUrl: str,  # FastAPI's spelling, kept for ports
        scheme_name: str | None = None,
        scopes: Mapping[str, str] | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(scheme_name=scheme_name, description=description, auto_error=auto_error)
        self.token_url = tokenUrl
        self.scopes = dict(scopes or {})

    async def __call__(self, connection: HTTPConnection) -> str | None:
        """The bearer token."""
        scheme, token = get_authorization_scheme_param(connection.headers.get("authorization"))
        if scheme.lower() != "bearer" or not token:
            if self.auto_error:
                raise self.make_not_authenticated_error()
            return None
        return token
