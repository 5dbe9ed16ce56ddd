"""Extending a security scheme the FastAPI way: override ``__call__(self, request)``.

``RevocableBearer`` reuses ``HTTPBearer``'s parsing through
``super().__call__(request=request)`` and refuses revoked tokens with 403. The
same instance protects the WebSocket route and the HTTP route: on the
WebSocket route, ``request`` is the ``WebSocket``.
"""

from typing import Annotated

from trioapi import HTTPConnection, HTTPException, Security, TrioAPI, WebSocket
from trioapi.security import HTTPAuthorizationCredentials, HTTPBearer

app = TrioAPI()
revoked_tokens = {"stolen-token"}


class RevocableBearer(HTTPBearer):
    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        credentials = await super().__call__(request=request)
        if credentials is not None and credentials.credentials in revoked_tokens:
            raise HTTPException(status_code=403, detail="Token revoked")
        return credentials


bearer = RevocableBearer()
Token = Annotated[HTTPAuthorizationCredentials, Security(bearer)]


@app.websocket("/ws")
async def feed(websocket: WebSocket, token: Token) -> None:
    await websocket.accept()
    await websocket.send_text(f"hello, holder of {token.credentials}")
    await websocket.close()


@app.get("/me")
async def me(token: Token) -> dict[str, str]:
    return {"token": token.credentials}
