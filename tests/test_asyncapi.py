"""The AsyncAPI 3.0 document: what it says about each route, where it is served, and that it is valid.

Validity is the official parser's verdict (``@asyncapi/parser`` from the npm
registry, in tests/js, run with node), for every example app and for an app
that uses every kind of parameter and security scheme.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import attrs
import pytest
from js_packages import JS, ensure_installed

from trioapi import Depends, Header, Query, Security, TrioAPI, WebSocket
from trioapi import Path as PathParam
from trioapi.asyncapi import DEFAULT_UI_URL
from trioapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    APIKeyQuery,
    APIKeySubprotocol,
    HTTPBasic,
    HTTPBearer,
    OAuth2PasswordBearer,
)
from trioapi.testing import TestClient

ROOT = Path(__file__).resolve().parent.parent
#: Every example app (a module of examples/ that defines ``app``; presence.py is a helper of chat.py).
EXAMPLES = sorted(
    path.stem
    for path in (ROOT / "examples").glob("*.py")
    if re.search(r"^app\b", path.read_text(), re.MULTILINE)
)


# -- an app with one of everything ----------------------------------------------------------


@attrs.frozen
class Subscribe:
    """Start receiving a symbol's prices."""

    type: Literal["subscribe"]
    symbol: str


@attrs.frozen
class Unsubscribe:
    type: Literal["unsubscribe"]
    symbol: str


@attrs.frozen
class Price:
    """A symbol's latest price."""

    symbol: str
    price: float


bearer = HTTPBearer(bearerFormat="JWT", description="An access token")
oauth2 = OAuth2PasswordBearer(tokenUrl="/token", scopes={"prices:read": "Read prices"})


def user(token: Annotated[str, Security(oauth2, scopes=["prices:read"])]) -> str:
    return token


def everything_app() -> TrioAPI:
    app = TrioAPI(
        title="Prices",
        version="2.1.0",
        description="Live prices.",
        asyncapi_servers={"production": {"host": "prices.example.com", "protocol": "wss"}},
    )

    @app.websocket(
        "/prices/{market}/{depth:int}",
        receives=Subscribe | Unsubscribe,
        sends=Price,
        summary="Price stream",
        tags=["prices"],
    )
    async def prices(
        websocket: WebSocket,
        market: Annotated[str, PathParam(description="The market's code")],
        depth: int,
        interval: Annotated[float, Query(gt=0, le=60, description="Seconds between prices")] = 1.0,
        fields: Annotated[list[str], Query(max_length=5)] = [],  # noqa: B006 - a marker's default
        client_version: Annotated[str | None, Header(alias="X-Client-Version")] = None,
        who: str = Depends(user),
    ) -> None:
        """Prices of the symbols the client subscribes to."""

    for path, scheme in [
        ("/bearer", bearer),
        ("/basic", HTTPBasic()),
        ("/key-in-query", APIKeyQuery(name="token")),
        ("/key-in-header", APIKeyHeader(name="X-Key")),
        ("/key-in-cookie", APIKeyCookie(name="session")),
        ("/key-in-subprotocol", APIKeySubprotocol()),
    ]:

        async def secured(websocket: WebSocket, credentials: Any = Depends(scheme)) -> None:
            pass

        app.add_api_websocket_route(path, secured, name=path.strip("/"))
    return app


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return everything_app().asyncapi()


# -- what the document says --------------------------------------------------------------


def test_info_comes_from_the_app(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {"title": "Prices", "version": "2.1.0", "description": "Live prices."}


def test_servers_come_from_the_setting(document: dict[str, Any]) -> None:
    assert document["servers"] == {"production": {"host": "prices.example.com", "protocol": "wss"}}


def test_each_route_is_a_channel_at_its_path_with_its_parameters(document: dict[str, Any]) -> None:
    assert list(document["channels"]) == [
        "prices",
        "bearer",
        "basic",
        "key-in-query",
        "key-in-header",
        "key-in-cookie",
        "key-in-subprotocol",
    ]
    channel = document["channels"]["prices"]
    assert channel["address"] == "/prices/{market}/{depth}"
    assert channel["parameters"] == {
        "market": {"description": "The market's code"},
        "depth": {"description": "integer"},
    }
    assert channel["title"] == "Price stream"
    assert channel["description"] == "Prices of the symbols the client subscribes to."
    assert channel["tags"] == [{"name": "prices"}]


def test_the_ws_binding_holds_query_and_header_parameters_as_json_schema(document: dict[str, Any]) -> None:
    binding = document["channels"]["prices"]["bindings"]["ws"]
    assert binding["method"] == "GET"
    assert binding["query"] == {
        "type": "object",
        "properties": {
            "interval": {
                "type": "number",
                "description": "Seconds between prices",
                "exclusiveMinimum": 0,
                "maximum": 60,
                "default": 1.0,
            },
            "fields": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        },
    }
    assert binding["headers"] == {
        "type": "object",
        "properties": {"x-client-version": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    }


def test_each_member_of_a_tagged_union_is_a_message_and_the_union_a_oneof(document: dict[str, Any]) -> None:
    channel = document["channels"]["prices"]
    assert list(channel["messages"]) == ["Subscribe", "Unsubscribe", "Price"]
    messages = document["components"]["messages"]
    assert messages["Subscribe"] == {
        "name": "Subscribe",
        "title": "Subscribe",
        "contentType": "application/json",
        "summary": "Start receiving a symbol's prices.",
        "payload": {"$ref": "#/components/schemas/Subscribe"},
    }
    schemas = document["components"]["schemas"]
    assert schemas["prices.receive"] == {
        "oneOf": [{"$ref": "#/components/schemas/Subscribe"}, {"$ref": "#/components/schemas/Unsubscribe"}],
        "discriminator": "type",
    }
    assert schemas["Subscribe"]["properties"]["type"] == {"const": "subscribe", "type": "string"}
    assert schemas["Price"]["required"] == ["symbol", "price"]


def test_receive_and_send_operations_list_the_channels_messages(document: dict[str, Any]) -> None:
    receive = document["operations"]["prices.receive"]
    send = document["operations"]["prices.send"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": "#/channels/prices"}
    assert receive["messages"] == [
        {"$ref": "#/channels/prices/messages/Subscribe"},
        {"$ref": "#/channels/prices/messages/Unsubscribe"},
    ]
    assert send["action"] == "send"
    assert send["messages"] == [{"$ref": "#/channels/prices/messages/Price"}]


@pytest.mark.parametrize(
    ("channel", "name", "scheme"),
    [
        (
            "bearer",
            "HTTPBearer",
            {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "An access token"},
        ),
        ("basic", "HTTPBasic", {"type": "http", "scheme": "basic"}),
        ("key-in-query", "APIKeyQuery", {"type": "httpApiKey", "name": "token", "in": "query"}),
        ("key-in-header", "APIKeyHeader", {"type": "httpApiKey", "name": "X-Key", "in": "header"}),
        ("key-in-cookie", "APIKeyCookie", {"type": "httpApiKey", "name": "session", "in": "cookie"}),
        (
            "key-in-subprotocol",
            "APIKeySubprotocol",
            {
                "type": "httpApiKey",
                "name": "Sec-WebSocket-Protocol",
                "in": "header",
                "description": "Offer the subprotocol 'access_token.<key>' beside the real one.",
            },
        ),
    ],
)
def test_a_security_dependency_becomes_a_security_scheme(
    document: dict[str, Any], channel: str, name: str, scheme: dict[str, Any]
) -> None:
    assert document["components"]["securitySchemes"][name] == scheme
    for action in ("receive", "send"):
        operation = document["operations"][f"{channel}.{action}"]
        assert operation["security"] == [{"$ref": f"#/components/securitySchemes/{name}"}]
        assert "messages" not in operation  # none declared on these routes


def test_oauth2_scopes_asked_by_security_are_on_the_operation(document: dict[str, Any]) -> None:
    # A relative tokenUrl is resolved against the first server: AsyncAPI wants a URI.
    flow = {"tokenUrl": "https://prices.example.com/token", "availableScopes": {"prices:read": "Read prices"}}
    assert document["components"]["securitySchemes"]["OAuth2PasswordBearer"] == {
        "type": "oauth2",
        "flows": {"password": flow},
    }
    assert document["operations"]["prices.receive"]["security"] == [
        {"type": "oauth2", "flows": {"password": flow}, "scopes": ["prices:read"]}
    ]


def test_the_document_is_built_once() -> None:
    app = everything_app()
    assert app.asyncapi() is app.asyncapi()


# -- where it is served --------------------------------------------------------------------


async def test_the_document_is_served_as_json() -> None:
    app = everything_app()
    async with TestClient(app) as client:
        response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == app.asyncapi()


async def test_the_docs_page_loads_the_component_and_the_document() -> None:
    async with TestClient(TrioAPI(title="A <b>title</b>")) as client:
        page = (await client.get("/asyncapi")).text
    assert f'<script src="{DEFAULT_UI_URL}/browser/standalone/index.js"></script>' in page
    assert f'href="{DEFAULT_UI_URL}/styles/default.min.css"' in page
    assert '{"schema": {"url": "/asyncapi.json"}' in page
    assert "<title>A &lt;b&gt;title&lt;/b&gt; - AsyncAPI</title>" in page


async def test_urls_are_configurable_and_none_turns_them_off() -> None:
    moved = TrioAPI(asyncapi_url="/api/doc.json", asyncapi_docs_url="/api/doc", asyncapi_ui_url="/static/ui/")
    async with TestClient(moved) as client:
        assert (await client.get("/api/doc.json")).status_code == 200
        page = (await client.get("/api/doc")).text
        assert (await client.get("/asyncapi")).status_code == 404
    assert '<script src="/static/ui/browser/standalone/index.js">' in page
    assert '"url": "/api/doc.json"' in page
    async with TestClient(TrioAPI(asyncapi_url=None)) as client:
        assert (await client.get("/asyncapi.json")).status_code == 404
        assert (await client.get("/asyncapi")).status_code == 404
    async with TestClient(TrioAPI(asyncapi_docs_url=None)) as client:
        assert (await client.get("/asyncapi.json")).status_code == 200
        assert (await client.get("/asyncapi")).status_code == 404


def test_the_command_writes_the_document(tmp_path: Path) -> None:
    output = tmp_path / "asyncapi.json"
    subprocess.run(
        [sys.executable, "-m", "trioapi", "asyncapi", "examples.typed_chat:app", "-o", str(output)],
        cwd=ROOT,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    from examples.typed_chat import app

    assert json.loads(output.read_text()) == app.asyncapi()


def test_the_command_prints_the_document_and_refuses_what_is_not_an_app() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    printed = subprocess.run(
        [sys.executable, "-m", "trioapi", "asyncapi", "examples.basic:app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert json.loads(printed.stdout)["channels"]["websocket_endpoint"]["address"] == "/ws"
    refused = subprocess.run(
        [sys.executable, "-m", "trioapi", "asyncapi", "examples.typed_chat:hub"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert refused.returncode == 1
    assert "is not an ASGI app" in refused.stderr  # load_app checks it before asyncapi() is looked for


# -- the official parser ------------------------------------------------------------------------


def official_parser(documents: dict[str, dict[str, Any]], folder: Path) -> dict[str, dict[str, Any]]:
    """Each document as the official AsyncAPI parser reads it (one node process for all)."""
    ensure_installed()
    files = []
    for name, document in documents.items():
        file = folder / f"{name}.json"
        file.write_text(json.dumps(document))
        files.append(str(file))
    result = subprocess.run(
        ["node", str(JS / "validate.mjs"), *files], capture_output=True, text=True, timeout=120
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(files), result.stderr
    return {Path(line["file"]).stem: line for line in lines}


def expected_names(app: TrioAPI) -> dict[str, Any]:
    """What the parser must find, from the document itself: channels, parameters, messages, schemes."""
    document = app.asyncapi()
    return {
        "channels": {
            channel_id: {
                "address": channel["address"],
                "parameters": list(channel.get("parameters", {})),
                "messages": list(channel["messages"]),
            }
            for channel_id, channel in document["channels"].items()
        },
        "securitySchemes": list(document.get("components", {}).get("securitySchemes", {})),
    }


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    apps = {name: importlib.import_module(f"examples.{name}").app for name in EXAMPLES}
    documents = {name: app.asyncapi() for name, app in apps.items()}
    documents["everything"] = everything_app().asyncapi()
    return official_parser(documents, tmp_path_factory.mktemp("asyncapi"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_document_is_valid_and_names_its_routes(
    example: str, parsed: dict[str, dict[str, Any]]
) -> None:
    result = parsed[example]
    assert (result["valid"], result["errors"]) == (True, [])
    app = importlib.import_module(f"examples.{example}").app
    expected = expected_names(app)
    assert {key: result["parsed"][key] for key in expected} == expected
    routes = [route for route in app.routes if getattr(route, "protocol", None) == "websocket"]
    assert sorted(channel["address"] for channel in expected["channels"].values()) == sorted(
        route.compiled.format for route in routes
    )


def test_the_parser_reads_every_kind_of_parameter_message_and_scheme(
    parsed: dict[str, dict[str, Any]],
) -> None:
    result = parsed["everything"]
    assert (result["valid"], result["errors"], result["warnings"]) == (True, [], [])
    reading = result["parsed"]
    assert reading["channels"]["prices"] == {
        "address": "/prices/{market}/{depth}",
        "parameters": ["market", "depth"],
        "messages": ["Subscribe", "Unsubscribe", "Price"],
    }
    assert reading["operations"]["prices.receive"]["messages"] == ["Subscribe", "Unsubscribe"]
    assert reading["operations"]["prices.receive"]["security"][0]["scopes"] == ["prices:read"]
    assert reading["operations"]["key-in-cookie.send"]["security"] == [
        {"type": "httpApiKey", "name": "session", "in": "cookie"}
    ]
    assert sorted(reading["securitySchemes"]) == [
        "APIKeyCookie",
        "APIKeyHeader",
        "APIKeyQuery",
        "APIKeySubprotocol",
        "HTTPBasic",
        "HTTPBearer",
        "OAuth2PasswordBearer",
    ]


def test_the_parser_check_notices_an_invalid_document(tmp_path: Path) -> None:
    broken = everything_app().asyncapi() | {"channels": {"x": {"address": 42}}}
    result = official_parser({"broken": broken}, tmp_path)["broken"]
    assert result["valid"] is False
    assert result["errors"]
