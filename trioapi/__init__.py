"""trioapi: FastAPI's WebSocket API on Trio, with structured concurrency per connection.

The names users import live here, as in ``fastapi``; implementation modules
starting with an underscore are private.
"""

from __future__ import annotations

from trioapi import status
from trioapi.applications import TrioAPI
from trioapi.exceptions import HTTPException, WebSocketException
from trioapi.params import Body, Cookie, Depends, Header, Path, Query, Security
from trioapi.requests import HTTPConnection, Request
from trioapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from trioapi.routing import APIRouter
from trioapi.server import serve
from trioapi.websockets import WebSocket, WebSocketDisconnect, WebSocketState

__version__ = "0.1.0"

__all__ = [
    "APIRouter",
    "Body",
    "Cookie",
    "Depends",
    "HTMLResponse",
    "HTTPConnection",
    "HTTPException",
    "Header",
    "JSONResponse",
    "Path",
    "PlainTextResponse",
    "Query",
    "Request",
    "Response",
    "Security",
    "TrioAPI",
    "WebSocket",
    "WebSocketDisconnect",
    "WebSocketException",
    "WebSocketState",
    "serve",
    "status",
]
