"""The app's WebSocket routes as an AsyncAPI 3.0 document, and a page that shows it.

OpenAPI cannot describe WebSockets; `AsyncAPI <https://www.asyncapi.com>`_ can.
``asyncapi_document`` builds the document from the routes as they were declared:

- one **channel** per WebSocket route, its ``address`` the path (``/rooms/{room}``,
  each path parameter a channel parameter), its ``ws`` binding the handshake's
  query and header parameters (``Query``/``Header`` markers) as JSON Schema;
- a **receive** operation for what the route ``receives`` and a **send**
  operation for what it ``sends``, one **message** per type (each member of a
  tagged union), its payload the type's JSON Schema in ``components.schemas``,
  and the union itself as a ``oneOf`` with its ``discriminator``;
- the **security schemes** of the route's security dependencies
  (``trioapi.security``: HTTP bearer/basic/digest, API keys in the query,
  a header, a cookie or the subprotocol, OAuth2 bearer with its scopes; a
  relative ``tokenUrl`` is resolved against the first server, else
  ``http://localhost``, as AsyncAPI wants an absolute one).

``TrioAPI`` serves it at ``/asyncapi.json`` and a human page at ``/asyncapi``
(``asyncapi_url``/``asyncapi_docs_url``, ``None`` turns them off); the
``trioapi asyncapi module:app`` command prints it, for docs pipelines and for
the native server, which serves WebSockets only.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from trioapi.messages import MessageCodec, message_codec
from trioapi.routing import APIWebSocketRoute, BaseRoute
from trioapi.security.api_key import APIKeyCookie, APIKeyHeader, APIKeyQuery, APIKeySubprotocol
from trioapi.security.base import SecurityBase
from trioapi.security.http import HTTPBase, HTTPBearer
from trioapi.security.oauth2 import OAuth2PasswordBearer

if TYPE_CHECKING:
    from trioapi.dependencies.analysis import ValueParam

__all__ = ["ASYNCAPI_VERSION", "DEFAULT_UI_URL", "asyncapi_document", "asyncapi_html"]

#: The version of the AsyncAPI specification the document follows.
ASYNCAPI_VERSION = "3.0.0"

#: Where the ``/asyncapi`` page loads the AsyncAPI React component from by default:
#: the package's folder on a public CDN (``browser/standalone/index.js`` and
#: ``styles/default.min.css`` under it). Point ``TrioAPI(asyncapi_ui_url=...)``
#: at your own copy to serve the page without the CDN.
DEFAULT_UI_URL = "https://unpkg.com/@asyncapi/react-component@3.2.1"

_WS_BINDING_VERSION = "0.1.0"
_UNDECLARED = {
    "receive": "The client sends messages (types not declared: receives=...)",
    "send": "The server sends messages (types not declared: sends=...)",
}
_KEY = re.compile(r"[^A-Za-z0-9_.\-]")


def asyncapi_document(
    routes: Iterable[BaseRoute],
    *,
    title: str,
    version: str,
    description: str | None = None,
    servers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (a JSON-ready dict) describing the WebSocket ``routes``.

    ``servers`` is the document's ``servers`` object as is, such as
    ``{"production": {"host": "chat.example.com", "protocol": "wss"}}``. Other
    kinds of routes (HTTP) are left out. Raises ``ValueError`` if two different
    message types would share a name.
    """
    builder = _DocumentBuilder(_base_url(servers))
    for route in routes:
        if isinstance(route, APIWebSocketRoute):
            builder.add_route(route)
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    document: dict[str, Any] = {"asyncapi": ASYNCAPI_VERSION, "info": info}
    if servers:
        document["servers"] = {name: dict(server) for name, server in servers.items()}
    document["defaultContentType"] = "application/json"
    document["channels"] = builder.channels
    document["operations"] = builder.operations
    components = {
        "schemas": builder.schemas,
        "messages": builder.messages,
        "securitySchemes": builder.security_schemes,
    }
    document["components"] = {key: value for key, value in components.items() if value}
    return document


def asyncapi_html(*, asyncapi_url: str, title: str, ui_url: str = DEFAULT_UI_URL) -> str:
    """The HTML of a page that renders the document at ``asyncapi_url`` with the AsyncAPI component.

    ``ui_url`` is the folder of the ``@asyncapi/react-component`` package (on a
    CDN, or a copy you serve): the page loads its standalone bundle and styles.
    """
    base = ui_url.rstrip("/")
    config = {"schema": {"url": asyncapi_url}, "config": {"show": {"sidebar": True}}}
    # JSON in a <script>: "</" must not end the script early.
    props = json.dumps(config).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{html.escape(title)} - AsyncAPI</title>
  <link rel="stylesheet" href="{html.escape(base)}/styles/default.min.css">
</head>
<body>
  <div id="asyncapi"></div>
  <script src="{html.escape(base)}/browser/standalone/index.js"></script>
  <script>
    AsyncApiStandalone.render({props}, document.getElementById("asyncapi"));
  </script>
</body>
</html>
"""


class _DocumentBuilder:
    """Collects channels, operations and components route by route, sharing what repeats."""

    def __init__(self, base_url: str) -> None:
        #: What relative URLs (an OAuth2 ``tokenUrl``) are resolved against: AsyncAPI wants absolute ones.
        self.base_url = base_url
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.schemas: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.security_schemes: dict[str, Any] = {}
        # Which type each message name stands for, to refuse two types under one name.
        self._message_types: dict[str, Any] = {}

    def add_route(self, route: APIWebSocketRoute) -> None:
        channel_id = _unique(_key(route.name), self.channels)
        channel: dict[str, Any] = {"address": route.compiled.format}
        if route.summary:
            channel["title"] = route.summary
            channel["summary"] = route.summary
        if route.description:
            channel["description"] = route.description
        values = [value for plan, _ in route.plan.walk() for value in plan.values]
        parameters = self._parameters(route, values)
        if parameters:
            channel["parameters"] = parameters
        messages: dict[str, Any] = {}
        channel["messages"] = messages
        channel["bindings"] = {"ws": self._ws_binding(values)}
        if route.tags:
            channel["tags"] = [{"name": tag} for tag in route.tags]
        self.channels[channel_id] = channel

        security = self._security(route)
        declared = route.messages
        for action, codec in (("receive", declared.receives), ("send", declared.sends)):
            operation: dict[str, Any] = {"action": action, "channel": {"$ref": f"#/channels/{channel_id}"}}
            if codec is None:
                # Undeclared, so no messages to list; the operation still carries the security.
                operation["summary"] = _UNDECLARED[action]
            else:
                names = self._add_messages(codec)
                for name in names:
                    messages[name] = {"$ref": f"#/components/messages/{name}"}
                if codec.discriminator is not None:
                    self._add_schema(f"{channel_id}.{action}", codec.schema)
                operation["messages"] = [
                    {"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in names
                ]
                operation["summary"] = _operation_summary(action, codec)
            if route.tags:
                operation["tags"] = [{"name": tag} for tag in route.tags]
            if security:
                operation["security"] = security
            self.operations[f"{channel_id}.{action}"] = operation

    # -- parameters and bindings -------------------------------------------------

    def _parameters(self, route: APIWebSocketRoute, values: list[ValueParam]) -> dict[str, Any]:
        described = {value.key: value for value in values if value.location == "path"}
        parameters: dict[str, Any] = {}
        for name in route.compiled.convertors:
            parameter: dict[str, Any] = {}
            value = described.get(name)
            if value is not None:
                # A parameter object has no schema: its description says the type.
                schema = self._value_schema(value)
                description = schema.get("description") or schema.get("type")
                if description:
                    parameter["description"] = description
                if "enum" in schema:
                    parameter["enum"] = [str(item) for item in schema["enum"]]
            parameters[name] = parameter
        return parameters

    def _ws_binding(self, values: list[ValueParam]) -> dict[str, Any]:
        binding: dict[str, Any] = {"method": "GET"}
        for location, field in (("query", "query"), ("header", "headers")):
            properties: dict[str, Any] = {}
            required: list[str] = []
            for value in values:
                if value.location != location or value.key in properties:
                    continue
                properties[value.key] = self._value_schema(value)
                if value.required:
                    required.append(value.key)
            if properties:
                schema: dict[str, Any] = {"type": "object", "properties": properties}
                if required:
                    schema["required"] = required
                binding[field] = schema
        binding["bindingVersion"] = _WS_BINDING_VERSION
        return binding

    def _value_schema(self, value: ValueParam) -> dict[str, Any]:
        """JSON Schema of a query or header parameter: its type, constraints, description and default."""
        annotation = value.annotation
        try:
            codec = message_codec(annotation)
        except (TypeError, ValueError):  # a type only a text converter knows: say nothing false
            schema: dict[str, Any] = {}
        else:
            schema = dict(codec.schema)
            for name, definition in codec.definitions.items():
                self._add_schema(name, definition)
        marker = value.marker
        if marker is not None:
            if marker.description:
                schema["description"] = marker.description
            many = value.many
            for key, bound in (
                ("exclusiveMinimum", marker.gt),
                ("minimum", marker.ge),
                ("exclusiveMaximum", marker.lt),
                ("maximum", marker.le),
                ("minItems" if many else "minLength", marker.min_length),
                ("maxItems" if many else "maxLength", marker.max_length),
                ("pattern", marker.pattern),
            ):
                if bound is not None:
                    schema[key] = bound
        if not value.required and isinstance(value.default, str | int | float | bool):
            schema["default"] = value.default
        return schema

    # -- messages ------------------------------------------------------------------

    def _add_schema(self, name: str, schema: dict[str, Any]) -> None:
        known = self.schemas.get(name)
        if known is not None and known != schema:
            raise ValueError(
                f"two different schemas are called {name!r} in the AsyncAPI document; rename one of the types"
            )
        self.schemas[name] = schema

    def _add_messages(self, codec: MessageCodec) -> list[str]:
        """Register a message per member of ``codec``'s type; return their names."""
        for name, definition in codec.definitions.items():
            self._add_schema(name, definition)
        names = []
        for member in codec.members:
            member_codec = codec if member is codec.type else message_codec(member)
            name = _key(getattr(member, "__name__", None) or member_codec.name)
            known = self._message_types.get(name)
            if known is not None and known is not member:
                raise ValueError(
                    f"two different message types are called {name!r} in the AsyncAPI document; rename one"
                )
            self._message_types[name] = member
            if name not in self.messages:
                message: dict[str, Any] = {"name": name, "title": name, "contentType": "application/json"}
                summary = _summary(member)
                if summary:
                    message["summary"] = summary
                message["payload"] = member_codec.schema
                for schema_name, definition in member_codec.definitions.items():
                    self._add_schema(schema_name, definition)
                self.messages[name] = message
            names.append(name)
        return names

    # -- security --------------------------------------------------------------------

    def _security(self, route: APIWebSocketRoute) -> list[dict[str, Any]]:
        """The operation's ``security``: each scheme the route depends on (any one of them admits)."""
        requirements: list[dict[str, Any]] = []
        for plan, scopes in route.plan.walk():
            scheme = plan.call
            if not isinstance(scheme, SecurityBase):
                continue
            described = _scheme_object(scheme, self.base_url)
            name = _key(scheme.scheme_name)
            while name in self.security_schemes and self.security_schemes[name] != described:
                name += "_"
            self.security_schemes[name] = described
            if scopes and described["type"] == "oauth2":
                requirements.append({**described, "scopes": list(dict.fromkeys(scopes))})
            else:
                requirement = {"$ref": f"#/components/securitySchemes/{name}"}
                if requirement not in requirements:
                    requirements.append(requirement)
        return requirements


def _base_url(servers: Mapping[str, Mapping[str, Any]] | None) -> str:
    """The HTTP URL of the first server, or ``http://localhost`` when there is none."""
    for server in (servers or {}).values():
        secure = server.get("protocol") in ("wss", "https")
        return f"{'https' if secure else 'http'}://{server['host']}{server.get('pathname', '')}/"
    return "http://localhost/"


def _scheme_object(scheme: SecurityBase, base_url: str) -> dict[str, Any]:
    """The AsyncAPI security scheme object for one of trioapi's schemes."""
    described: dict[str, Any]
    if isinstance(scheme, OAuth2PasswordBearer):
        token_url = urljoin(base_url, scheme.token_url)
        flow = {"tokenUrl": token_url, "availableScopes": dict(scheme.scopes)}
        described = {"type": "oauth2", "flows": {"password": flow}}
    elif isinstance(scheme, APIKeySubprotocol):
        described = {
            "type": "httpApiKey",
            "name": "Sec-WebSocket-Protocol",
            "in": "header",
            "description": f"Offer the subprotocol '{scheme.name}<key>' beside the real one.",
        }
    elif isinstance(scheme, APIKeyQuery | APIKeyHeader | APIKeyCookie):
        where = {APIKeyQuery: "query", APIKeyHeader: "header", APIKeyCookie: "cookie"}[type(scheme)]
        described = {"type": "httpApiKey", "name": scheme.name, "in": where}
    elif isinstance(scheme, HTTPBase):
        described = {"type": "http", "scheme": scheme.scheme}
        if isinstance(scheme, HTTPBearer) and scheme.bearer_format:
            described["bearerFormat"] = scheme.bearer_format
    else:  # a scheme of the app's own: say what can be said
        described = {"type": "httpApiKey", "name": scheme.scheme_name, "in": "header"}
    if scheme.description:
        described["description"] = scheme.description
    return described


def _summary(member: Any) -> str | None:
    doc = getattr(member, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return None
    first = doc.strip().splitlines()[0].strip()
    # dataclasses and TypedDicts get their signature as a docstring: not a summary.
    name = getattr(member, "__name__", "")
    if first.startswith(f"{name}(") or first.startswith("dict()"):
        return None
    return first


def _operation_summary(action: str, codec: MessageCodec) -> str:
    what = " or ".join(getattr(member, "__name__", codec.name) for member in codec.members)
    return f"The client sends {what}" if action == "receive" else f"The server sends {what}"


def _key(name: str) -> str:
    """A valid component key (letters, digits, ``_.-``)."""
    return _KEY.sub("_", name) or "_"


def _unique(name: str, taken: Mapping[str, Any]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    return candidate
