"""Security schemes for HTTP and WebSocket routes, used as dependencies.

Each scheme is a callable class taking the connection (``request``, an
``HTTPConnection``), so the same instance protects HTTP routes and WebSocket
routes::

    security = HTTPBearer()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, token: HTTPAuthorizationCredentials = Depends(security)): ...

Missing credentials raise ``HTTPException(401)`` with a ``WWW-Authenticate``
challenge, which denies a WebSocket handshake with a real HTTP 401 before the
handler runs. ``origin_allowed`` is the ``Origin`` check behind
``allowed_origins`` (cross-site WebSocket hijacking protection).
"""

from trioapi.security.api_key import APIKeyCookie, APIKeyHeader, APIKeyQuery, APIKeySubprotocol
from trioapi.security.base import SecurityBase, get_authorization_scheme_param
from trioapi.security.http import (
    HTTPAuthorizationCredentials,
    HTTPBase,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
    HTTPDigest,
)
from trioapi.security.oauth2 import (
    OAuth2,
    OAuth2AuthorizationCodeBearer,
    OAuth2PasswordBearer,
    SecurityScopes,
)
from trioapi.security.open_id_connect_url import OpenIdConnect
from trioapi.security.origin import origin_allowed

__all__ = [
    "APIKeyCookie",
    "APIKeyHeader",
    "APIKeyQuery",
    "APIKeySubprotocol",
    "HTTPAuthorizationCredentials",
    "HTTPBase",
    "HTTPBasic",
    "HTTPBasicCredentials",
    "HTTPBearer",
    "HTTPDigest",
    "OAuth2",
    "OAuth2AuthorizationCodeBearer",
    "OAuth2PasswordBearer",
    "OpenIdConnect",
    "SecurityBase",
    "SecurityScopes",
    "get_authorization_scheme_param",
    "origin_allowed",
]
