"""Typed messages: ``receive_model``, ``iter_models``, ``send_model`` and route declarations, in memory."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import logging
import uuid
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import attrs
import pydantic
import pytest

from docs.snippets import porting_models
from trioapi import APIRouter, TrioAPI, WebSocket
from trioapi.exceptions import RouteDefinitionError
from trioapi.messages import MessageValidationError, UnsupportedMessageType, jsonable, message_codec
from trioapi.testing import TestClient

# -- message types of every supported kind -----------------------------------------------


class Mood(enum.Enum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


@attrs.frozen
class Point:
    x: int
    y: int


@attrs.frozen
class Shape:
    """A record using every supported field type."""

    name: str
    points: list[Point]
    at: datetime.datetime
    id: uuid.UUID
    price: decimal.Decimal
    mood: Mood
    kind: Literal["polygon", "line"]
    note: str | None = None
    weight: float = 1.0
    visible: bool = True


@dataclasses.dataclass
class Greeting:
    text: str
    times: int = 1


class Settings(TypedDict):
    volume: int
    theme: NotRequired[str]


@attrs.frozen
class Join:
    type: Literal["join"]
    room: str


@attrs.frozen
class Say:
    type: Literal["say"]
    text: str


@dataclasses.dataclass
class Leave:
    type: Literal["leave"]


ClientMessage = Join | Say | Leave


class PydanticSay(pydantic.BaseModel):
    type: Literal["say"]
    text: str = pydantic.Field(max_length=5)


class PydanticJoin(pydantic.BaseModel):
    type: Literal["join"]
    room: str


PydanticMessage = Annotated[PydanticJoin | PydanticSay, pydantic.Field(discriminator="type")]

SHAPE = {
    "name": "triangle",
    "points": [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 0, "y": 1}],
    "at": "2024-05-01T12:30:00+00:00",
    "id": "12345678-1234-5678-1234-567812345678",
    "price": "9.99",
    "mood": "happy",
    "kind": "polygon",
}


def echo_app(model: Any, **route: Any) -> TrioAPI:
    """An app whose /echo route receives ``model`` and sends back what it got, as JSON."""
    app = TrioAPI()

    @app.websocket("/echo", receives=model, **route)
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_models():
            await websocket.send_model(message)

    return app


async def roundtrip(model: Any, data: Any) -> Any:
    async with TestClient(echo_app(model)) as client, client.websocket_connect("/echo") as ws:
        await ws.send_json(data)
        return await ws.receive_json()


async def close_after(model: Any, data: Any | str) -> tuple[int, str]:
    """Send ``data`` (a str is sent as is) to an echo of ``model``; the close code and reason."""
    async with TestClient(echo_app(model)) as client, client.websocket_connect("/echo") as ws:
        if isinstance(data, str):
            await ws.send_text(data)
        else:
            await ws.send_json(data)
        return await ws.wait_closed()


# -- conversion ---------------------------------------------------------------------------


async def test_an_attrs_record_with_every_field_kind_arrives_converted_and_goes_back_as_json() -> None:
    app = TrioAPI()
    got: list[Shape] = []

    @app.websocket("/shape", receives=Shape)
    async def shape(websocket: WebSocket) -> None:
        await websocket.accept()
        got.append(await websocket.receive_model())
        await websocket.send_model(got[0])

    async with TestClient(app) as client, client.websocket_connect("/shape") as ws:
        await ws.send_json(SHAPE)
        echoed = await ws.receive_json()
    assert got == [
        Shape(
            name="triangle",
            points=[Point(0, 0), Point(1, 0), Point(0, 1)],
            at=datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
            id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
            price=decimal.Decimal("9.99"),
            mood=Mood.HAPPY,
            kind="polygon",
        )
    ]
    assert echoed == {**SHAPE, "note": None, "weight": 1.0, "visible": True}


async def test_a_dataclass_fills_in_its_defaults() -> None:
    assert await roundtrip(Greeting, {"text": "hi"}) == {"text": "hi", "times": 1}


async def test_a_typeddict_arrives_as_a_checked_dict() -> None:
    assert await roundtrip(Settings, {"volume": 3}) == {"volume": 3}
    assert await close_after(Settings, {"volume": "loud"}) == (
        1007,
        "invalid Settings: volume: expected an integer, got string",
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "join", "room": "lobby"}, Join("join", "lobby")),
        ({"type": "say", "text": "hi"}, Say("say", "hi")),
        ({"type": "leave"}, Leave("leave")),
    ],
)
async def test_a_tagged_union_is_resolved_by_its_type_field(data: dict[str, Any], expected: object) -> None:
    app = TrioAPI()
    got: list[object] = []

    @app.websocket("/ws", receives=ClientMessage)
    async def ws_route(websocket: WebSocket) -> None:
        await websocket.accept()
        got.append(await websocket.receive_model())

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_json(data)
        assert await ws.wait_closed() == (1000, "")
    assert got == [expected]


@attrs.frozen
class Add:
    op: Literal["add", "plus"]
    n: int


@attrs.frozen
class Clear:
    op: Literal["clear"]


def test_the_tag_may_be_any_literal_field_and_have_several_values() -> None:
    codec = message_codec(Add | Clear)
    assert codec.discriminator == "op"
    assert codec.structure({"op": "plus", "n": 2}) == Add("plus", 2)
    assert codec.structure({"op": "clear"}) == Clear("clear")
    assert codec.schema == {
        "oneOf": [{"$ref": "#/components/schemas/Add"}, {"$ref": "#/components/schemas/Clear"}],
        "discriminator": "op",
    }


async def test_pydantic_models_are_validated_by_pydantic() -> None:
    assert await roundtrip(PydanticMessage, {"type": "say", "text": "hey"}) == {"type": "say", "text": "hey"}
    assert await close_after(PydanticMessage, {"type": "say", "text": "too long"}) == (
        1007,
        "invalid PydanticSay: text: String should have at most 5 characters",
    )


async def test_an_explicit_type_overrides_the_declared_one() -> None:
    app = TrioAPI()

    @app.websocket("/ws", receives=ClientMessage)
    async def ws_route(websocket: WebSocket) -> None:
        await websocket.accept()
        point = await websocket.receive_model(Point)
        await websocket.send_model(Point(point.y, point.x))

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_json({"x": 1, "y": 2})
        assert await ws.receive_json() == {"x": 2, "y": 1}


async def test_binary_mode_reads_and_writes_utf8_json_in_binary_frames() -> None:
    app = TrioAPI()

    @app.websocket("/bin")
    async def binary(websocket: WebSocket) -> None:
        await websocket.accept()
        message = await websocket.receive_model(Say, mode="binary")
        await websocket.send_model(message, mode="binary")

    async with TestClient(app) as client, client.websocket_connect("/bin") as ws:
        await ws.send_bytes(b'{"type": "say", "text": "caf\xc3\xa9"}')
        assert json.loads(await ws.receive_bytes()) == {"type": "say", "text": "café"}


async def test_iter_models_ends_when_the_client_leaves() -> None:
    app = TrioAPI()
    seen: list[object] = []

    @app.websocket("/ws", receives=ClientMessage)
    async def ws_route(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_models():
            seen.append(message)
        seen.append("loop ended")

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_json({"type": "say", "text": "bye"})
        await ws.close(1000)
    assert seen == [Say("say", "bye"), "loop ended"]


def test_jsonable_is_what_send_model_sends() -> None:
    said = Say("say", "hi")
    assert jsonable(said) == {"type": "say", "text": "hi"}
    assert jsonable({"at": datetime.date(2024, 1, 2), "points": [Point(1, 2)]}) == {
        "at": "2024-01-02",
        "points": [{"x": 1, "y": 2}],
    }


# -- invalid messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"type": "say", "text": 3}, "invalid Say: text: expected a string, got integer"),
        ({"type": "join"}, "invalid Join: room: field required"),
        (
            {"type": "shout"},
            "invalid Join | Say | Leave: type: expected one of 'join', 'say', 'leave', got 'shout'",
        ),
        ({"text": "hi"}, "invalid Join | Say | Leave: type: field required (one of 'join', 'say', 'leave')"),
        (["say"], "invalid Join | Say | Leave: expected an object, got array"),
        ("{not json", "invalid JSON: Expecting property name enclosed in double quotes at position 1"),
    ],
)
async def test_an_invalid_message_closes_with_1007_naming_the_field(data: Any, reason: str) -> None:
    assert await close_after(ClientMessage, data) == (1007, reason)


async def test_a_nested_bad_field_is_named_by_its_path() -> None:
    bad = {**SHAPE, "points": [{"x": 0, "y": 0}, {"x": "one", "y": 0}]}
    assert await close_after(Shape, bad) == (
        1007,
        "invalid Shape: points.1.x: expected an integer, got string",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("at", "yesterday", "expected an ISO 8601 datetime, got 'yesterday'"),
        ("id", "nope", "expected a UUID, got 'nope'"),
        ("price", "cheap", "expected a decimal number, got 'cheap'"),
        ("mood", "sad", "expected one of 'happy', 'grumpy', got 'sad'"),
        ("kind", "circle", "expected 'polygon', 'line', got 'circle'"),
        ("visible", 1, "expected a boolean, got integer"),
        ("weight", "heavy", "expected a number, got string"),
        ("points", "abc", "expected an array, got string"),
        ("points", {"x": 1}, "expected an array, got object"),
    ],
)
async def test_each_field_kind_refuses_a_wrong_value(field: str, value: Any, message: str) -> None:
    assert await close_after(Shape, {**SHAPE, field: value}) == (1007, f"invalid Shape: {field}: {message}")


async def test_the_close_reason_fits_in_a_close_frame() -> None:
    long_name = "ü" * 100
    code, reason = await close_after(Shape, {**SHAPE, "kind": long_name})
    assert code == 1007
    assert reason.startswith("invalid Shape: kind: expected 'polygon', 'line', got")
    assert len(reason.encode("utf-8")) <= 123


async def test_an_invalid_message_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trioapi"):
        assert (await close_after(ClientMessage, {"type": "say"}))[0] == 1007
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []
    assert any("closing with 1007" in record.getMessage() for record in caplog.records)


async def test_a_handler_can_catch_the_error_and_read_every_failure() -> None:
    app = TrioAPI()

    @app.websocket("/ws", receives=Shape)
    async def ws_route(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_model()
        except MessageValidationError as error:
            await websocket.send_json([[list(item["loc"]), item["type"]] for item in error.errors()])

    async with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        await ws.send_json({**SHAPE, "name": 1, "mood": "sad", "points": None})
        assert await ws.receive_json() == [
            [["name"], "string_type"],
            [["points"], "list_type"],
            [["mood"], "enum"],
        ]


# -- on_invalid ----------------------------------------------------------------------------


async def tell_client(websocket: WebSocket, error: MessageValidationError) -> None:
    await websocket.send_json({"error": error.reason, "fields": [list(e["loc"]) for e in error.errors()]})


async def test_on_invalid_answers_and_keeps_the_connection() -> None:
    app = echo_app(ClientMessage, on_invalid=tell_client)
    async with TestClient(app) as client, client.websocket_connect("/echo") as ws:
        await ws.send_json({"type": "say", "text": 3})
        assert await ws.receive_json() == {
            "error": "invalid Say: text: expected a string, got integer",
            "fields": [["text"]],
        }
        await ws.send_text("{oops")
        assert (await ws.receive_json())["error"].startswith("invalid JSON")
        await ws.send_json({"type": "say", "text": "still here"})
        assert await ws.receive_json() == {"type": "say", "text": "still here"}


async def test_on_invalid_may_close_the_connection_itself() -> None:
    async def strike_out(websocket: WebSocket, error: MessageValidationError) -> None:
        await websocket.close(4000, "one strike")

    async with TestClient(echo_app(ClientMessage, on_invalid=strike_out)) as client:
        async with client.websocket_connect("/echo") as ws:
            await ws.send_json({"type": "nope"})
            assert await ws.wait_closed() == (4000, "one strike")


async def test_on_invalid_must_be_async() -> None:
    with pytest.raises(RouteDefinitionError, match="on_invalid"):
        echo_app(ClientMessage, on_invalid=lambda websocket, error: None)


# -- declarations ----------------------------------------------------------------------------


async def test_the_codec_is_built_when_the_route_is_declared_and_never_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = echo_app(ClientMessage)
    route = app.routes[-1]
    assert route.messages.receives is message_codec(ClientMessage)

    def no_more_building(tp: Any) -> Any:
        raise AssertionError(f"a codec was built per message for {tp!r}")

    monkeypatch.setattr("trioapi.messages._cattrs_codec", no_more_building)
    async with TestClient(app) as client, client.websocket_connect("/echo") as ws:
        for text in ("a", "b", "c"):
            await ws.send_json({"type": "say", "text": text})
            assert await ws.receive_json() == {"type": "say", "text": text}


async def test_receive_model_without_a_type_needs_a_declaration() -> None:
    app = TrioAPI()

    @app.websocket("/ws")
    async def ws_route(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_model()

    async with TestClient(app) as client:
        with pytest.raises(RuntimeError, match="receives="):
            async with client.websocket_connect("/ws") as ws:
                await ws.send_json({})
                await ws.wait_closed()


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (int | str, "unions of plain values are ambiguous"),
        (Point | Greeting, "give each member of the union a field of the same name"),
        (dict[int, str], "JSON object keys are strings"),
        (bytes, "cannot use"),
    ],
)
def test_a_type_that_cannot_be_used_is_refused_at_declaration(declared: Any, message: str) -> None:
    with pytest.raises(RouteDefinitionError, match=message):
        echo_app(declared)


def test_two_classes_with_one_name_are_refused() -> None:
    # A second class called Point: the schemas, named by class, would collide.
    other_point = attrs.make_class("Point", {"z": attrs.field(type=int)})
    clash = attrs.make_class("Clash", {"one": attrs.field(type=Point), "two": attrs.field(type=other_point)})
    with pytest.raises(UnsupportedMessageType, match="two message types are called 'Point'"):
        message_codec(clash)


async def test_include_router_keeps_the_declarations() -> None:
    router = APIRouter()

    @router.websocket("/echo", receives=ClientMessage, sends=ClientMessage, summary="Echo", tags=["t"])
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_model(await websocket.receive_model())

    app = TrioAPI()
    app.include_router(router, prefix="/v1")
    route = app.routes[-1]
    assert (route.path, route.receives, route.sends, route.summary, route.tags) == (
        "/v1/echo",
        ClientMessage,
        ClientMessage,
        "Echo",
        ["t"],
    )
    async with TestClient(app) as client, client.websocket_connect("/v1/echo") as ws:
        await ws.send_json({"type": "join", "room": "r"})
        assert await ws.receive_json() == {"type": "join", "room": "r"}


# -- the porting guide's before and after ----------------------------------------------------


async def test_porting_receive_model_answers_as_validating_by_hand_did() -> None:
    async with TestClient(porting_models.app) as client:
        for path in ("/by-hand", "/typed"):
            async with client.websocket_connect(path) as ws:
                await ws.send_json({"room": "lobby", "text": "hi"})
                assert await ws.receive_text() == "[lobby] hi"


async def test_porting_a_bad_message_is_a_1007_not_a_server_error() -> None:
    async with TestClient(porting_models.app, raise_server_exceptions=False) as client:
        async with client.websocket_connect("/by-hand") as ws:
            await ws.send_json({"room": "lobby"})
            assert await ws.wait_closed() == (1011, "Internal Server Error")
        async with client.websocket_connect("/typed") as ws:
            await ws.send_json({"room": "lobby"})
            assert await ws.wait_closed() == (1007, "invalid ChatMessage: text: Field required")
