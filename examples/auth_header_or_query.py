"""Accept a key from a header (services) or the query string (browsers), whichever is present.

With ``auto_error=False`` a scheme gives ``None`` instead of refusing, so the
dependency decides, and refuses only when neither was sent.
"""

from typing import Annotated

from trioapi import Depends, TrioAPI, WebSocket
from trioapi.security import APIKeyHeader, APIKeyQuery

app = TrioAPI()
key_in_header = APIKeyHeader(name="X-API-Key", auto_error=False)
key_in_query = APIKeyQuery(name="api_key", auto_error=False)

API_KEYS = {"k-123": "billing-service"}


def client_name(
    from_header: Annotated[str | None, Depends(key_in_header)],
    from_query: Annotated[str | None, Depends(key_in_query)],
) -> str:
    name = API_KEYS.get(from_header or from_query or "")
    if name is None:
        raise key_in_header.make_not_authenticated_error()
    return name


@app.websocket("/events")
async def events(websocket: WebSocket, client: Annotated[str, Depends(client_name)]) -> None:
    await websocket.accept()
    await websocket.send_json({"subscribed": client})
    await websocket.close()
