"""Parameter markers and conversions: what an endpoint receives for what a client sent.

No ``from __future__ import annotations`` here: the endpoints are defined inside
the tests and annotated with local names, which only eager annotations can see.
"""

import enum
import uuid
from typing import Annotated, Any, Literal

import attrs
import pytest
from handshakes import request_for, websocket_for

from trioapi.dependencies.analysis import EndpointPlan, analyze_endpoint
from trioapi.dependencies.solving import dependency_exit_stack, solve_dependencies
from trioapi.exceptions import (
    RequestValidationError,
    RouteDefinitionError,
    ValidationError,
    WebSocketRequestValidationError,
)
from trioapi.params import Body, Cookie, Header, Path, Query
from trioapi.requests import HTTPConnection, Request
from trioapi.websockets import WebSocket


def plan_for(
    endpoint: Any, path: str = "/ws", kind: Literal["websocket", "http"] = "websocket"
) -> EndpointPlan:
    names = frozenset(part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{"))
    return analyze_endpoint(endpoint, path=path, path_param_names=names, kind=kind)


async def solve(plan: EndpointPlan, connection: HTTPConnection) -> dict[str, Any]:
    async with dependency_exit_stack() as stack:
        return await solve_dependencies(plan, connection, stack=stack, overrides={})


async def values(
    endpoint: Any, target: str = "/ws", headers: Any = None, **path_params: Any
) -> dict[str, Any]:
    """The arguments a WebSocket endpoint gets for a handshake to ``target``."""
    path = target.partition("?")[0] if not path_params else "/ws/" + "/".join(f"{{{k}}}" for k in path_params)
    return await solve(plan_for(endpoint, path), websocket_for(target, headers, path_params))


async def errors(endpoint: Any, target: str = "/ws", headers: Any = None) -> list[dict[str, Any]]:
    """The validation errors a WebSocket endpoint's parameters produce for ``target``."""
    with pytest.raises(WebSocketRequestValidationError) as info:
        await values(endpoint, target, headers)
    return info.value.errors()


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


# -- the seed's query example ------------------------------------------------------


async def seed_query(websocket: WebSocket, room: str = Query(..., description="Chat room name"),
                     user_id: int = Query(..., description="User ID")) -> None:  # fmt: skip
    pass


async def test_seed_query_example_gets_room_and_integer_user_id() -> None:
    got = await values(seed_query, "/ws?room=lobby&user_id=7")
    assert got["room"] == "lobby"
    assert got["user_id"] == 7
    assert isinstance(got["websocket"], WebSocket)


async def test_seed_query_example_reports_every_missing_or_invalid_parameter() -> None:
    assert [(e["loc"], e["msg"]) for e in await errors(seed_query, "/ws?user_id=abc")] == [
        (("query", "room"), "field required"),
        (("query", "user_id"), "value is not a valid integer"),
    ]


async def test_validation_error_short_reason_names_the_parameter() -> None:
    with pytest.raises(ValidationError) as info:
        await values(seed_query, "/ws?room=a")
    assert info.value.short_reason() == "query.user_id: field required"


# -- markers: defaults, Annotated, aliases ----------------------------------------------


async def test_annotated_style_is_the_same_as_default_style() -> None:
    async def endpoint(
        room: Annotated[str, Query(description="room")], page: Annotated[int, Query()] = 1
    ) -> None:
        pass

    assert await values(endpoint, "/ws?room=x") == {"room": "x", "page": 1}
    assert [e["loc"] for e in await errors(endpoint, "/ws")] == [("query", "room")]


async def test_unmarked_parameter_is_a_query_parameter() -> None:
    async def endpoint(limit: int = 10, name=None) -> None:  # type: ignore[no-untyped-def]
        pass

    assert await values(endpoint, "/ws?limit=3&name=z") == {"limit": 3, "name": "z"}
    assert await values(endpoint, "/ws") == {"limit": 10, "name": None}


async def test_query_alias_reads_another_key() -> None:
    async def endpoint(item: str = Query(alias="item-id")) -> None:
        pass

    assert await values(endpoint, "/ws?item-id=42") == {"item": "42"}
    assert [e["loc"] for e in await errors(endpoint, "/ws?item=42")] == [("query", "item-id")]


async def test_query_none_default_makes_it_optional() -> None:
    async def endpoint(q: int | None = Query(None)) -> None:
        pass

    assert await values(endpoint, "/ws") == {"q": None}
    assert await values(endpoint, "/ws?q=5") == {"q": 5}


async def test_mutable_defaults_are_not_shared_between_connections() -> None:
    async def endpoint(tags: list[str] = Query(["a"])) -> None:
        pass

    plan = plan_for(endpoint)
    first = await solve(plan, websocket_for("/ws"))
    first["tags"].append("mutated")
    assert (await solve(plan, websocket_for("/ws")))["tags"] == ["a"]


# -- conversions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "text", "expected"),
    [
        (str, "héllo", "héllo"),
        (int, "-12", -12),
        (float, "2.5", 2.5),
        (bool, "true", True),
        (bool, "Yes", True),
        (bool, "on", True),
        (bool, "1", True),
        (bool, "false", False),
        (bool, "no", False),
        (bool, "OFF", False),
        (bool, "0", False),
        (bytes, "raw", b"raw"),
        (
            uuid.UUID,
            "12345678-1234-5678-1234-567812345678",
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
        ),
        (Color, "blue", Color.BLUE),
        (Level, "2", Level.HIGH),
        (Literal["a", "b"], "b", "b"),
        (int | None, "3", 3),
        (int | str, "x", "x"),
    ],
)
async def test_query_value_is_converted_to_the_annotation(annotation: Any, text: str, expected: Any) -> None:
    async def endpoint(v: annotation = Query()) -> None:
        pass

    assert (await values(endpoint, f"/ws?v={text}"))["v"] == expected


@pytest.mark.parametrize(
    ("annotation", "text", "message"),
    [
        (int, "1.5", "value is not a valid integer"),
        (float, "abc", "value is not a valid number"),
        (bool, "maybe", "value is not a valid boolean (use true/false, 1/0, yes/no or on/off)"),
        (uuid.UUID, "not-a-uuid", "value is not a valid UUID"),
        (Color, "green", "value is not one of 'red', 'blue'"),
    ],
)
async def test_conversion_errors_are_readable(annotation: Any, text: str, message: str) -> None:
    async def endpoint(v: annotation = Query()) -> None:
        pass

    [error] = await errors(endpoint, f"/ws?v={text}")
    assert error["loc"] == ("query", "v")
    assert error["msg"] == message
    assert error["input"] == text


async def test_repeated_query_key_fills_a_list() -> None:
    async def endpoint(tag: list[int] = Query([])) -> None:
        pass

    assert await values(endpoint, "/ws?tag=1&tag=2&tag=3") == {"tag": [1, 2, 3]}
    assert await values(endpoint, "/ws") == {"tag": []}


async def test_invalid_list_item_is_located_by_index() -> None:
    async def endpoint(tag: list[int] = Query()) -> None:
        pass

    assert [e["loc"] for e in await errors(endpoint, "/ws?tag=1&tag=x")] == [("query", "tag", 1)]
    assert [e["type"] for e in await errors(endpoint, "/ws")] == ["missing"]


# -- headers, cookies, path ---------------------------------------------------------------


async def test_header_name_comes_from_the_parameter_with_dashes() -> None:
    async def endpoint(x_token: str = Header()) -> None:
        pass

    assert await values(endpoint, "/ws", {"X-Token": "abc"}) == {"x_token": "abc"}
    [error] = await errors(endpoint, "/ws")
    assert error["loc"] == ("header", "x-token")


async def test_header_convert_underscores_false_keeps_the_name() -> None:
    async def endpoint(x_token: str = Header(convert_underscores=False)) -> None:
        pass

    assert await values(endpoint, "/ws", [("x_token", "under")]) == {"x_token": "under"}


async def test_repeated_header_fills_a_list() -> None:
    async def endpoint(x_tag: Annotated[list[str], Header()]) -> None:
        pass

    assert await values(endpoint, "/ws", [("X-Tag", "a"), ("x-tag", "b")]) == {"x_tag": ["a", "b"]}


async def test_cookie_is_read_by_name_or_alias() -> None:
    async def endpoint(session: str = Cookie(), theme: str = Cookie("light", alias="ui-theme")) -> None:
        pass

    got = await values(endpoint, "/ws", {"Cookie": "session=s1; ui-theme=dark"})
    assert got == {"session": "s1", "theme": "dark"}
    assert [e["loc"] for e in await errors(endpoint, "/ws")] == [("cookie", "session")]


async def test_path_parameter_is_found_by_name_in_the_template() -> None:
    async def endpoint(client_id: int, room: str = Path()) -> None:
        pass

    assert await values(endpoint, "/ws/7/x", client_id="7", room="x") == {"client_id": 7, "room": "x"}


async def test_path_parameter_converted_by_the_router_is_kept() -> None:
    async def endpoint(item: uuid.UUID) -> None:
        pass

    already = uuid.uuid4()
    assert await values(endpoint, "/ws/x", item=already) == {"item": already}


async def test_invalid_path_parameter_is_located_in_path() -> None:
    async def endpoint(client_id: int) -> None:
        pass

    plan = plan_for(endpoint, "/ws/{client_id}")
    with pytest.raises(WebSocketRequestValidationError) as info:
        await solve(plan, websocket_for("/ws/abc", path_params={"client_id": "abc"}))
    assert info.value.short_reason() == "path.client_id: value is not a valid integer"


# -- constraints ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "good", "bad", "message"),
    [
        (Query(gt=0), "1", "0", "value must be greater than 0"),
        (Query(ge=1), "1", "0", "value must be greater than or equal to 1"),
        (Query(lt=10), "9", "10", "value must be less than 10"),
        (Query(le=10), "10", "11", "value must be less than or equal to 10"),
    ],
)
async def test_numeric_constraints(marker: Any, good: str, bad: str, message: str) -> None:
    async def endpoint(n: int = marker) -> None:
        pass

    assert await values(endpoint, f"/ws?n={good}") == {"n": int(good)}
    [error] = await errors(endpoint, f"/ws?n={bad}")
    assert error["msg"] == message


async def test_length_and_pattern_constraints() -> None:
    async def endpoint(
        name: str = Query(min_length=2, max_length=4),
        code: str = Query("ab", pattern="^[a-z]+$"),
    ) -> None:
        pass

    assert await values(endpoint, "/ws?name=abc&code=xyz") == {"name": "abc", "code": "xyz"}
    assert [e["msg"] for e in await errors(endpoint, "/ws?name=a&code=X1")] == [
        "value must have at least 2 characters",
        "value does not match the pattern '^[a-z]+$'",
    ]
    assert [e["type"] for e in await errors(endpoint, "/ws?name=abcde")] == ["string_too_long"]


async def test_list_length_constraint_counts_items() -> None:
    async def endpoint(tag: list[str] = Query(max_length=2)) -> None:
        pass

    [error] = await errors(endpoint, "/ws?tag=a&tag=b&tag=c")
    assert error["msg"] == "value must have at most 2 items"


# -- HTTP bodies -------------------------------------------------------------------------


@attrs.define
class Item:
    name: str
    price: float
    tags: list[str] = attrs.Factory(list)


async def test_dict_parameter_binds_the_json_body_on_http_routes() -> None:
    async def endpoint(payload: dict[str, int]) -> None:
        pass

    plan = plan_for(endpoint, "/items", kind="http")
    assert await solve(plan, request_for("/items", json_body={"a": 1})) == {"payload": {"a": 1}}


async def test_attrs_class_is_built_from_the_body() -> None:
    async def endpoint(item: Item, request: Request) -> None:
        pass

    plan = plan_for(endpoint, "/items", kind="http")
    got = await solve(plan, request_for("/items", json_body={"name": "pen", "price": 2}))
    assert got["item"] == Item("pen", 2.0)


async def test_invalid_body_lists_each_field() -> None:
    async def endpoint(item: Item) -> None:
        pass

    plan = plan_for(endpoint, "/items", kind="http")
    with pytest.raises(RequestValidationError) as info:
        await solve(plan, request_for("/items", json_body={"price": "cheap", "tags": ["a", 1]}))
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [
        (("body", "name"), "missing"),
        (("body", "price"), "float_parsing"),
        (("body", "tags", 1), "string_type"),
    ]


async def test_several_body_parameters_are_members_of_one_object() -> None:
    async def endpoint(item: Item, note: str = Body(), count: int = Body(1)) -> None:
        pass

    plan = plan_for(endpoint, "/items", kind="http")
    body = {"item": {"name": "pen", "price": 1.5}, "note": "hi"}
    assert await solve(plan, request_for("/items", json_body=body)) == {
        "item": Item("pen", 1.5),
        "note": "hi",
        "count": 1,
    }


async def test_embed_reads_a_member_even_for_a_single_body_parameter() -> None:
    async def endpoint(item: Annotated[Item, Body(embed=True)]) -> None:
        pass

    plan = plan_for(endpoint, "/items", kind="http")
    got = await solve(plan, request_for("/items", json_body={"item": {"name": "a", "price": 1}}))
    assert got == {"item": Item("a", 1.0)}


async def test_malformed_json_and_missing_body_are_validation_errors() -> None:
    async def endpoint(payload: dict[str, Any]) -> None:
        pass

    plan = plan_for(endpoint, "/items", kind="http")
    with pytest.raises(RequestValidationError) as info:
        await solve(plan, request_for("/items", body=b"{nope"))
    assert info.value.errors()[0]["type"] == "json_invalid"
    with pytest.raises(RequestValidationError) as info:
        await solve(plan, request_for("/items"))
    assert info.value.errors()[0]["loc"] == ("body",)


# -- shapes refused when the route is declared -------------------------------------------------


def refusal(endpoint: Any, path: str = "/ws", kind: Literal["websocket", "http"] = "websocket") -> str:
    with pytest.raises(RouteDefinitionError) as info:
        plan_for(endpoint, path, kind)
    return str(info.value)


def test_request_parameter_on_a_websocket_route_is_refused() -> None:
    async def endpoint(request: Request) -> None:
        pass

    message = refusal(endpoint)
    assert "'request'" in message
    assert "HTTPConnection" in message


def test_websocket_parameter_on_an_http_route_is_refused() -> None:
    async def endpoint(websocket: WebSocket) -> None:
        pass

    assert "HTTP route" in refusal(endpoint, "/", "http")


def test_body_parameter_on_a_websocket_route_is_refused() -> None:
    async def endpoint(payload: dict[str, Any]) -> None:
        pass

    assert "WebSocket handshake does not have" in refusal(endpoint)


def test_unsupported_annotation_is_refused_with_the_supported_list() -> None:
    async def endpoint(when: complex = Query()) -> None:
        pass

    message = refusal(endpoint)
    assert "'when'" in message
    assert "supported:" in message


def test_path_marker_missing_from_the_template_is_refused() -> None:
    async def endpoint(room: str = Path()) -> None:
        pass

    assert "has no {room}" in refusal(endpoint, "/ws")


def test_default_inside_annotated_is_refused() -> None:
    async def endpoint(q: Annotated[int, Query(3)]) -> None:
        pass

    assert "not inside Annotated" in refusal(endpoint)


def test_constraint_that_cannot_apply_is_refused() -> None:
    async def endpoint(q: str = Query(gt=1)) -> None:
        pass

    assert "gt= applies to int and float" in refusal(endpoint)


def test_invalid_pattern_is_refused() -> None:
    async def endpoint(q: str = Query(pattern="(")) -> None:
        pass

    assert "not a valid regex" in refusal(endpoint)


def test_list_cookie_is_refused() -> None:
    async def endpoint(c: list[str] = Cookie()) -> None:
        pass

    assert "only query and header parameters can be lists" in refusal(endpoint)
