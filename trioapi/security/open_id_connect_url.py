"""OpenID Connect: the ``Authorization`` header of a client that got its token from an OpenID provider.

The module name mirrors FastAPI's ``fastapi.security.open_id_connect_url``.
"""

from __future__ import annotations

from trioapi.security.oauth2 import OAuth2

__all__ = ["OpenIdConnect"]


class OpenIdConnect(OAuth2):
    """The whole ``Authorization`` header value, unparsed, as FastAPI's ``OpenIdConnect`` returns it.

    ``openIdConnectUrl`` is the provider's discovery document
    (``.../.well-known/openid-configuration``), kept as ``openid_connect_url``
    for your own use. Missing header: 401 "Not authenticated" with
    ``WWW-Authenticate: Bearer`` (``None`` with ``auto_error=False``). Checking the
    token (its signature, issuer, audience) is the job of the dependency that
    uses this one.
    """

    def __init__(
        self,
        *,
        openIdConnectUrl: str,  # FastAPI's spelling, kept for ports
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        super().__init__(scheme_name=scheme_name, description=description, auto_error=auto_error)
        self.openid_connect_url = openIdConnectUrl
