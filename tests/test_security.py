"""Security schemes on WebSocket and HTTP routes, the Origin allow-list, and the auth examples.

No ``from __future__ import annotations``: endpoints are defined inside the
tests and annotated with local names, which only eager annotations can see.
"""

import base64
import json
from functools import partial
from typing import Annotated, Any

import attrs
import pytest
import trio
from handshakes import websocket_for
from servers import KINDS, ServerProcess, running_server
from trio_websocket import ConnectionRejected, open_websocket_url

from examples import auth_cookie, auth_header_or_query, auth_query, auth_subclass, auth_subprotocol
from trioapi import Depends, TrioAPI, WebSocket
from trioapi.datastructures import Headers
from trioapi.dependencies.analysis import analyze_endpoint
from trioapi.dependencies.solving import dependency_exit_stack, solve_dependencies
from trioapi.exceptions import HTTPException
from trioapi.requests import HTTPConnection
from trioapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    APIKeyQuery,
    APIKeySubprotocol,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBearer,
    HTTPDigest,
    OAuth2,
    OAuth2AuthorizationCodeBearer,
    OAuth2PasswordBearer,
    OpenIdConnect,
    get_authorization_scheme_param,
    origin_allowed,
)
from trioapi.security.base import SecurityBase
from trioapi.security.origin import normalize_origin
from trioapi.testing import TestClient, WebSocketRejected


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@attrs.frozen
class Case:
    """A scheme, how a client presents a credential to it, and what the endpoint then gets."""

    id: str
    make: Any
    credential: dict[str, Any]
    value: Any
    challenge: str


BEARER = {"headers": {"Authorization": "Bearer tok"}}
CASES = [
    Case("bearer", HTTPBearer, BEARER, {"scheme": "Bearer", "credentials": "tok"}, "Bearer"),
    Case(
        "basic",
        HTTPBasic,
        {"headers": {"Authorization": basic("ann", "pw:1")}},
        {"username": "ann", "password": "pw:1"},
        "Basic",
    ),
    Case(
        "digest",
        HTTPDigest,
        {"headers": {"Authorization": "Digest x=1"}},
        {"scheme": "Digest", "credentials": "x=1"},
        "Digest",
    ),
    Case("api-key-header", partial(APIKeyHeader, name="X-Key"), {"headers": {"x-key": "k1"}}, "k1", "APIKey"),
    Case("api-key-query", partial(APIKeyQuery, name="key"), {"params": {"key": "k2"}}, "k2", "APIKey"),
    Case(
        "api-key-cookie", partial(APIKeyCookie, name="key"), {"headers": {"Cookie": "key=k3"}}, "k3", "APIKey"
    ),
    Case(
        "oauth2",
        partial(OAuth2PasswordBearer, "token"),
        {"headers": {"Authorization": "bearer t"}},
        "t",
        "Bearer",
    ),
    Case(
        "oauth2-authorization-code",
        partial(OAuth2AuthorizationCodeBearer, authorizationUrl="/authorize", tokenUrl="/token"),
        {"headers": {"Authorization": "Bearer code-token"}},
        "code-token",
        "Bearer",
    ),
    # OAuth2 and OpenIdConnect hand over the whole header, unparsed, as FastAPI's do.
    Case("oauth2-any-flow", OAuth2, {"headers": {"Authorization": "Bearer raw"}}, "Bearer raw", "Bearer"),
    Case(
        "openid-connect",
        partial(OpenIdConnect, openIdConnectUrl="/.well-known/openid-configuration"),
        {"headers": {"Authorization": "Bearer id-token"}},
        "Bearer id-token",
        "Bearer",
    ),
]


def app_for(scheme: SecurityBase) -> TrioAPI:
    """A WebSocket route and an HTTP route that both send back what ``scheme`` returned."""
    app = TrioAPI()

    def as_json(value: Any) -> Any:
        return attrs.asdict(value) if attrs.has(type(value)) else value

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, credential: Annotated[Any, Depends(scheme)]) -> None:
        await websocket.accept()
        await websocket.send_json(as_json(credential))
        await websocket.close()

    @app.get("/http")
    async def http(credential: Annotated[Any, Depends(scheme)]) -> Any:
        return {"credential": as_json(credential)}

    return app


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_valid_credential_reaches_websocket_and_http_routes(case: Case) -> None:
    async with TestClient(app_for(case.make())) as client:
        async with client.websocket_connect("/ws", **case.credential) as ws:
            assert await ws.receive_json() == case.value
        response = await client.get("/http", **case.credential)
    assert response.json() == {"credential": case.value}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_missing_credential_denies_the_handshake_with_401(case: Case) -> None:
    async with TestClient(app_for(case.make())) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
        response = await client.get("/http")
    assert info.value.status_code == 401
    assert info.value.headers["www-authenticate"] == case.challenge
    assert info.value.json() == {"detail": "Not authenticated"}
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == case.challenge


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_auto_error_false_gives_none_instead(case: Case) -> None:
    async with TestClient(app_for(case.make(auto_error=False))) as client:
        async with client.websocket_connect("/ws") as ws:
            assert await ws.receive_json() is None
        assert (await client.get("/http")).json() == {"credential": None}


async def test_subprotocol_token_is_read_from_the_offered_subprotocols() -> None:
    app = app_for(APIKeySubprotocol())
    async with TestClient(app) as client:
        async with client.websocket_connect("/ws", subprotocols=["chat.v1", "access_token.abc"]) as ws:
            assert await ws.receive_json() == "abc"
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws", subprotocols=["chat.v1"]):
                pass
        assert info.value.status_code == 401
        response = await client.get("/http", headers={"Sec-WebSocket-Protocol": "v1, access_token.xyz"})
    assert response.json() == {"credential": "xyz"}


async def test_bearer_scheme_refuses_another_authorization_scheme() -> None:
    async with TestClient(app_for(HTTPBearer())) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws", headers={"Authorization": basic("a", "b")}):
                pass
    assert info.value.status_code == 401


async def test_malformed_basic_credentials_are_refused_even_without_auto_error() -> None:
    async with TestClient(app_for(HTTPBasic(realm="chat", auto_error=False))) as client:
        response = await client.get("/http", headers={"Authorization": "Basic !!!not-base64"})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid authentication credentials"}
    assert response.headers["www-authenticate"] == 'Basic realm="chat"'


async def test_seed_style_str_annotation_still_receives_the_credentials() -> None:
    security = HTTPBearer()

    def verify_websocket_token(token: str = Depends(security)) -> str:
        if token.credentials != "valid-token":  # type: ignore[attr-defined]
            raise HTTPException(status_code=401, detail="Invalid token")
        return token.credentials  # type: ignore[attr-defined,no-any-return]

    async def endpoint(websocket: WebSocket, token: str = Depends(verify_websocket_token)) -> None:
        pass

    plan = analyze_endpoint(endpoint, path="/ws", path_param_names=frozenset(), kind="websocket")
    connection = websocket_for("/ws", {"Authorization": "Bearer valid-token"})
    async with dependency_exit_stack() as stack:
        got = await solve_dependencies(plan, connection, stack=stack, overrides={})
    assert got["token"] == "valid-token"


async def test_oauth2_schemes_keep_fastapis_flow_arguments() -> None:
    password = OAuth2PasswordBearer("token", scopes={"chat": "read chat"}, refreshUrl="refresh")
    code = OAuth2AuthorizationCodeBearer("authorize", "token", "refresh", scopes={"chat": "read chat"})
    openid = OpenIdConnect(openIdConnectUrl="https://id.example/.well-known/openid-configuration")
    assert password.flows == {
        "password": {"tokenUrl": "token", "refreshUrl": "refresh", "scopes": {"chat": "read chat"}}
    }
    assert code.flows["authorizationCode"]["authorizationUrl"] == "authorize"
    assert (code.token_url, code.refresh_url, code.scopes) == ("token", "refresh", {"chat": "read chat"})
    assert openid.openid_connect_url == "https://id.example/.well-known/openid-configuration"
    assert OAuth2(flows={"implicit": {"authorizationUrl": "a", "scopes": {}}}).flows == {
        "implicit": {"authorizationUrl": "a", "scopes": {}}
    }


async def test_a_bearer_header_without_a_token_is_refused_by_the_oauth2_bearer_schemes() -> None:
    for scheme in (OAuth2PasswordBearer("token"), OAuth2AuthorizationCodeBearer("authorize", "token")):
        async with TestClient(app_for(scheme)) as client:
            response = await client.get("/http", headers={"Authorization": "Bearer"})
        assert response.status_code == 401


class KeywordBearer(HTTPBearer):
    """A FastAPI-style subclass: ``__call__(self, request)``, delegating with ``request=``."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        credentials = await super().__call__(request=request)
        if credentials is not None and credentials.credentials == "revoked":
            raise HTTPException(status_code=403, detail="Token revoked")
        return credentials


class UnannotatedBearer(HTTPBearer):
    """The same override with ``request`` left unannotated: it takes ``HTTPBearer``'s annotation."""

    async def __call__(self, request):  # type: ignore[no-untyped-def]
        return await super().__call__(request=request)


@pytest.mark.parametrize("scheme", [KeywordBearer, UnannotatedBearer])
async def test_a_subclass_calling_super_with_request_serves_websocket_and_http_routes(scheme: Any) -> None:
    async with TestClient(app_for(scheme())) as client:
        async with client.websocket_connect("/ws", **BEARER) as ws:
            assert await ws.receive_json() == {"scheme": "Bearer", "credentials": "tok"}
        response = await client.get("/http", **BEARER)
        assert response.json() == {"credential": {"scheme": "Bearer", "credentials": "tok"}}
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
    assert info.value.status_code == 401


async def test_a_subclass_may_refuse_with_its_own_status() -> None:
    async with TestClient(app_for(KeywordBearer())) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws", headers={"Authorization": "Bearer revoked"}):
                pass
    assert info.value.status_code == 403
    assert info.value.json() == {"detail": "Token revoked"}


async def test_overriding_make_not_authenticated_error_changes_the_refusal() -> None:
    """FastAPI documents this override to get the pre-0.12x 403 back."""

    class Legacy403(APIKeyHeader):
        def make_not_authenticated_error(self, detail: str = "Not authenticated") -> HTTPException:
            return HTTPException(status_code=403, detail=detail)

    async with TestClient(app_for(Legacy403(name="X-Key"))) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws"):
                pass
        response = await client.get("/http")
    assert (info.value.status_code, response.status_code) == (403, 403)


async def test_a_security_scheme_can_be_called_directly_with_the_connection() -> None:
    connection = websocket_for("/ws", {"Authorization": "Bearer direct"})
    assert await OAuth2PasswordBearer("token")(request=connection) == "direct"
    assert await OpenIdConnect(openIdConnectUrl="/oidc")(connection) == "Bearer direct"


async def test_auth_subclass_example_on_both_kinds_of_route() -> None:
    async with TestClient(auth_subclass.app) as client:
        async with client.websocket_connect("/ws", headers={"Authorization": "Bearer good"}) as ws:
            assert await ws.receive_text() == "hello, holder of good"
        assert (await client.get("/me", headers={"Authorization": "Bearer good"})).json() == {"token": "good"}
        with pytest.raises(WebSocketRejected) as revoked:
            async with client.websocket_connect("/ws", headers={"Authorization": "Bearer stolen-token"}):
                pass
        missing = await client.get("/me")
    assert (revoked.value.status_code, revoked.value.json()) == (403, {"detail": "Token revoked"})
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")


def test_get_authorization_scheme_param_splits_scheme_and_parameter() -> None:
    assert get_authorization_scheme_param("Bearer  abc ") == ("Bearer", "abc")
    assert get_authorization_scheme_param(None) == ("", "")


# -- Origin allow-list --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        ("https://evil.example", None, True),
        ("https://chat.example.com", frozenset({"https://chat.example.com"}), True),
        ("https://evil.example", frozenset({"https://chat.example.com"}), False),
        (None, frozenset({"https://chat.example.com"}), True),
        ("https://evil.example", frozenset({"*"}), True),
        ("HTTPS://Chat.Example.com:443", frozenset({"https://chat.example.com/"}), True),
        ("http://chat.example.com", frozenset({"https://chat.example.com"}), False),
        ("https://chat.example.com:8443", frozenset({"https://chat.example.com"}), False),
        ("https://a.example.com", frozenset({"https://*.example.com"}), True),
        ("https://example.com", frozenset({"https://*.example.com"}), False),
        ("https://evilexample.com", frozenset({"https://*.example.com"}), False),
        ("null", frozenset({"https://chat.example.com"}), False),
        ("null", frozenset({"null"}), True),
    ],
)
def test_origin_allowed(origin: str | None, allowed: frozenset[str] | None, expected: bool) -> None:
    headers = Headers({"origin": origin} if origin is not None else {})
    assert origin_allowed(headers, allowed) is expected


def test_normalize_origin_keeps_ipv6_literals_and_explicit_ports() -> None:
    assert normalize_origin("http://[::1]:8000") == "http://[::1]:8000"
    assert normalize_origin("https://[::1]:443/") == "https://[::1]"


# -- the authentication examples ------------------------------------------------------------


async def test_query_token_example() -> None:
    async with TestClient(auth_query.app) as client:
        async with client.websocket_connect("/ws?token=s3cret") as ws:
            assert await ws.receive_text() == "Hello, alice!"
            await ws.send_text("hi")
            assert await ws.receive_text() == "alice: hi"
        for target, detail in (("/ws?token=nope", "Invalid token"), ("/ws", "Not authenticated")):
            with pytest.raises(WebSocketRejected) as info:
                async with client.websocket_connect(target):
                    pass
            assert (info.value.status_code, info.value.json()) == (401, {"detail": detail})


async def test_cookie_example_accepts_its_own_origin() -> None:
    headers = {"Cookie": "session=abc123", "Origin": "https://chat.example.com"}
    async with TestClient(auth_cookie.app) as client, client.websocket_connect("/ws", headers=headers) as ws:
        assert await ws.receive_json() == {"user": "alice", "unread": 3}


async def test_cookie_example_denies_a_foreign_origin_with_403_before_any_dependency_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[str] = []
    monkeypatch.setattr(auth_cookie, "SESSIONS", _Recording(looked_up, {"abc123": "alice"}))
    headers = {"Cookie": "session=abc123", "Origin": "https://evil.example"}
    async with TestClient(auth_cookie.app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws", headers=headers):
                pass
    assert info.value.status_code == 403
    assert looked_up == []


async def test_cookie_example_without_a_cookie_is_401() -> None:
    async with TestClient(auth_cookie.app) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws", headers={"Origin": "https://chat.example.com"}):
                pass
    assert info.value.status_code == 401


async def test_subprotocol_example_accepts_the_app_protocol_not_the_token() -> None:
    async with TestClient(auth_subprotocol.app) as client:
        async with client.websocket_connect("/ws", subprotocols=["chat.v1", "access_token.t0ken"]) as ws:
            assert ws.accepted_subprotocol == "chat.v1"
            assert await ws.receive_text() == "Hello, alice!"
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/ws", subprotocols=["chat.v1", "access_token.bad"]):
                pass
    assert info.value.status_code == 401


class _Recording(dict[str, str]):
    """A dict that records every key looked up with ``get``."""

    def __init__(self, log: list[str], items: dict[str, str]) -> None:
        super().__init__(items)
        self.log = log

    def get(self, key: str, default: Any = None) -> Any:
        self.log.append(key)
        return super().get(key, default)


async def test_header_or_query_example_takes_either_and_refuses_neither() -> None:
    async with TestClient(auth_header_or_query.app) as client:
        for kwargs in ({"headers": {"X-API-Key": "k-123"}}, {"params": {"api_key": "k-123"}}):
            async with client.websocket_connect("/events", **kwargs) as ws:  # type: ignore[arg-type]
                assert await ws.receive_json() == {"subscribed": "billing-service"}
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/events"):
                pass
    assert info.value.status_code == 401
    assert info.value.headers["www-authenticate"] == "APIKey"


# -- on real servers, with trio-websocket's client ---------------------------------------------------


async def _live_auth_examples(server: ServerProcess) -> None:
    headers = [(b"Cookie", b"session=abc123"), (b"Origin", b"https://chat.example.com")]
    async with open_websocket_url(server.url("/ws"), extra_headers=headers) as ws:
        assert json.loads(await ws.get_message()) == {"user": "alice", "unread": 3}
    foreign = [(b"Cookie", b"session=abc123"), (b"Origin", b"https://evil.example")]
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(server.url("/ws"), extra_headers=foreign):
            pass
    assert info.value.status_code == 403
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(server.url("/ws"), extra_headers=headers[1:]):
            pass
    assert info.value.status_code == 401


@pytest.mark.parametrize("kind", KINDS)
async def test_cookie_example_on_a_real_server(kind: str) -> None:
    with running_server(kind, "examples.auth_cookie:app") as server:
        with trio.fail_after(20):
            await _live_auth_examples(server)
        assert server.terminate() == 0
        assert "Traceback" not in server.output, server.output


@pytest.mark.parametrize("kind", KINDS)
async def test_closes_from_both_sides_at_once_leave_the_server_serving(kind: str) -> None:
    """The cookie example closes right after its message, as the client closes on receiving it.

    On hypercorn 0.18 an app that returned at once after its close could race the worker's
    answer to the client's close, and the ``BusyResourceError`` ended the worker process;
    trioapi waits for the client's answer before returning. Bounded: 30 rounds of 5 clients.
    """
    headers = [(b"Cookie", b"session=abc123"), (b"Origin", b"https://chat.example.com")]

    async def client() -> None:
        async with open_websocket_url(server.url("/ws"), extra_headers=headers) as ws:
            assert json.loads(await ws.get_message()) == {"user": "alice", "unread": 3}

    with running_server(kind, "examples.auth_cookie:app") as server:
        with trio.fail_after(30):
            for _ in range(30):
                async with trio.open_nursery() as nursery:
                    for _ in range(5):
                        nursery.start_soon(client)
        assert server.process.poll() is None, server.output
        assert server.terminate() == 0
        assert "Traceback" not in server.output, server.output


@pytest.mark.parametrize("kind", KINDS)
async def test_subprotocol_example_on_a_real_server(kind: str) -> None:
    with running_server(kind, "examples.auth_subprotocol:app") as server:
        with trio.fail_after(20):
            offered = ["chat.v1", "access_token.t0ken"]
            async with open_websocket_url(server.url("/ws"), subprotocols=offered) as ws:
                assert ws.subprotocol == "chat.v1"
                assert await ws.get_message() == "Hello, alice!"
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket_url(server.url("/ws"), subprotocols=["chat.v1"]):
                    pass
            assert info.value.status_code == 401
        assert server.terminate() == 0
        assert "Traceback" not in server.output, server.output
