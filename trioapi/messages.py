"""Typed WebSocket messages: JSON in, your classes out, and back; with a JSON Schema for each.

A route declares what its client sends and what it answers::

    @attrs.frozen
    class Join:
        type: Literal["join"]
        room: str

    @attrs.frozen
    class Say:
        type: Literal["say"]
        text: str

    @app.websocket("/chat", receives=Join | Say, sends=Said)
    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_models():  # Join or Say, chosen by "type"
            ...

Supported: attrs classes, dataclasses, ``TypedDict``, ``Literal`` and ``Enum``
fields, ``datetime``/``date``/``time`` (ISO 8601 strings), ``UUID``, ``Decimal``
(sent as a string), ``X | None``, lists, tuples, sets and ``dict[str, X]``, nested
records, and tagged unions: records that each have a ``Literal`` field of the
same name (``type`` if they have one), resolved by that field's value. Pydantic
models (and unions of them) work too when pydantic is installed; trioapi does not
depend on it. Everything else goes through `cattrs <https://catt.rs>`_.

A ``MessageCodec`` (converter and JSON Schema) is built once per type: when a
route is declared for its ``receives``/``sends``, on first use for a type passed
to ``receive_model(T)``. Per message there is one ``json.loads``, one call of the
type's structuring function, and nothing else.

A message that does not fit raises ``MessageValidationError`` (a
``WebSocketException`` with code 1007): left uncaught it closes the connection
with 1007 and a reason naming the first bad field. A route's ``on_invalid``
handler can answer the client instead and keep the connection open.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import sys
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, Union

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, IterableValidationNote

from trioapi.exceptions import WebSocketException

if TYPE_CHECKING:
    from trioapi._types import Scope

__all__ = [
    "MessageCodec",
    "MessageValidationError",
    "OnInvalid",
    "RouteMessages",
    "UnsupportedMessageType",
    "jsonable",
    "message_codec",
    "receive_model",
]

#: ``async def on_invalid(websocket, error) -> None``: answer a message that did
#: not validate; the connection stays open and receiving goes on.
OnInvalid: TypeAlias = Callable[[Any, "MessageValidationError"], Awaitable[None]]


class JSONSource(Protocol):
    """What ``receive_model`` reads from: a ``WebSocket`` (its scope names the route)."""

    scope: Scope

    async def receive_json(self, mode: str = "text") -> Any:
        """The next message parsed as JSON."""


#: Where the JSON Schemas of records point: the AsyncAPI document's components.
SCHEMA_REF_PREFIX = "#/components/schemas/"


class MessageValidationError(WebSocketException, ValueError):
    """A received message did not fit the expected type (or was not JSON).

    Left uncaught it closes the connection with 1007 (Invalid Frame Payload
    Data) and a reason naming the first bad field, such as ``invalid Say:
    text: expected a string, got integer``. ``errors()`` lists every failure in
    FastAPI's shape: ``loc`` (the path to the field), ``msg`` and ``type``.
    """

    def __init__(self, errors: list[dict[str, Any]], expected: str) -> None:
        self._errors = errors
        #: The name of the type the message should have been.
        self.expected = expected
        super().__init__(1007, _short_reason(errors, expected))

    def errors(self) -> list[dict[str, Any]]:
        """Each failure as ``{"loc": (...), "msg": ..., "type": ...}``, in the order found."""
        return [dict(error) for error in self._errors]


class UnsupportedMessageType(TypeError):
    """A message type trioapi cannot convert or describe; raised when it is declared or first used."""


def _short_reason(errors: list[dict[str, Any]], expected: str) -> str:
    if not errors:
        return f"invalid {expected}"
    first = errors[0]
    if first["type"] == "json_invalid":
        return str(first["msg"])  # already says "invalid JSON: ..."
    where = ".".join(str(part) for part in first["loc"])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    reason = f"invalid {expected}: {where + ': ' if where else ''}{first['msg']}{more}"
    # A close reason holds at most 123 bytes (RFC 6455); cut at a character boundary.
    return reason.encode("utf-8")[:123].decode("utf-8", "ignore")


# -- codecs -----------------------------------------------------------------------


@attrs.frozen(eq=False)
class MessageCodec:
    """How one message type is read from JSON, written to JSON, and described.

    Built once per type by ``message_codec``; ``structure`` and ``unstructure``
    are plain function calls per message.
    """

    #: The type as declared (a class, a union, ``list[X]``...).
    type: Any
    #: A name for the type: the class name, or the members of a union joined by ``|``.
    name: str
    #: Parsed JSON to the type; raises ``MessageValidationError``.
    structure: Callable[[Any], Any]
    #: An instance to JSON-ready data (dicts, lists, strings, numbers).
    unstructure: Callable[[Any], Any]
    #: JSON Schema of the type; records are ``$ref`` into ``#/components/schemas/``.
    schema: dict[str, Any]
    #: The JSON Schemas those references point to, by name.
    definitions: dict[str, dict[str, Any]]
    #: For a union, the members (each a message of its own in AsyncAPI); else ``(type,)``.
    members: tuple[Any, ...]
    #: For a tagged union, the field whose value says which member a message is.
    discriminator: str | None = None


_CODECS: dict[Any, MessageCodec] = {}


def message_codec(tp: Any) -> MessageCodec:
    """The codec for ``tp``, built on first use and cached for good.

    Raises ``UnsupportedMessageType`` saying what to write instead when ``tp``
    cannot be converted or described.
    """
    try:
        return _CODECS[tp]
    except KeyError:
        pass
    except TypeError:
        raise UnsupportedMessageType(f"{tp!r} is not a type trioapi can use for messages") from None
    codec = _pydantic_codec(tp) if _uses_pydantic(tp) else _cattrs_codec(tp)
    _CODECS[tp] = codec
    return codec


def _type_name(tp: Any) -> str:
    members = _union_members(tp)
    if members is not None:
        return " | ".join(_type_name(member) for member in members)
    origin = typing.get_origin(tp)
    if origin is not None and origin is not Literal:
        return getattr(origin, "__name__", repr(tp))
    return getattr(tp, "__name__", None) or repr(tp)


def _union_members(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


# -- cattrs --------------------------------------------------------------------------


class _Invalid(ValueError):
    """A value our own hooks refused: the error dict, with ``loc`` relative to the value."""

    def __init__(self, type_: str, msg: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(msg)
        self.error = {"loc": loc, "msg": msg, "type": type_}


_JSON_KINDS = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    list: "array",
    dict: "object",
}


def _kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _expect(value: Any, kind: str) -> typing.NoReturn:
    raise _Invalid(f"{kind}_type", f"expected {_article(kind)} {kind}, got {_kind(value)}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _to_str(value: Any, _: Any) -> str:
    if type(value) is not str:
        _expect(value, "string")
    return value


def _to_int(value: Any, _: Any) -> int:
    if type(value) is not int:
        if type(value) is float and value.is_integer():
            return int(value)
        _expect(value, "integer")
    return value


def _to_float(value: Any, _: Any) -> float:
    if type(value) is not float:
        if type(value) is not int:
            _expect(value, "number")
        return float(value)
    return value


def _to_bool(value: Any, _: Any) -> bool:
    if type(value) is not bool:
        _expect(value, "boolean")
    return value


def _iso_parser(cls: Any, what: str) -> Callable[[Any, Any], Any]:
    def parse(value: Any, _: Any) -> Any:
        if type(value) is not str:
            _expect(value, "string")
        try:
            return cls.fromisoformat(value)
        except ValueError:
            raise _Invalid(f"{what}_parsing", f"expected an ISO 8601 {what}, got {value[:40]!r}") from None

    return parse


def _to_uuid(value: Any, _: Any) -> uuid.UUID:
    if type(value) is not str:
        _expect(value, "string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _Invalid("uuid_parsing", f"expected a UUID, got {value[:40]!r}") from None


def _to_decimal(value: Any, _: Any) -> decimal.Decimal:
    # A string keeps every digit; numbers are accepted too, through their text.
    if type(value) is str or type(value) is int or type(value) is float:
        try:
            result = decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            pass
        else:
            if result.is_finite():
                return result
    raise _Invalid("decimal_parsing", f"expected a decimal number, got {str(value)[:40]!r}")


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp) or _is_typeddict(tp))


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and typing.is_typeddict(tp)


def _record_fields(cls: type) -> list[tuple[str, Any, bool, Any, str | None]]:
    """``(JSON key, type, required, default, description)`` for each field of a record class."""
    try:
        if attrs.has(cls):
            attrs.resolve_types(cls)
            return [
                (
                    field.name,
                    field.type if field.type is not None else Any,
                    field.default is attrs.NOTHING,
                    field.default,
                    field.metadata.get("description"),
                )
                for field in attrs.fields(cls)
                if field.init
            ]
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as exc:
        raise UnsupportedMessageType(
            f"cannot resolve the field types of {cls.__qualname__}: {exc}; define the types it names "
            "at module level"
        ) from None
    if _is_typeddict(cls):
        # Not __required_keys__: under ``from __future__ import annotations`` Python 3.11
        # computes it before NotRequired[...] is evaluated, and gets it wrong.
        total = getattr(cls, "__total__", True)
        found: list[tuple[str, Any, bool, Any, str | None]] = []
        for name, tp in hints.items():
            base, required = _strip_annotated(tp), total
            if typing.get_origin(base) in (typing.Required, typing.NotRequired):
                required = typing.get_origin(base) is typing.Required
                base = typing.get_args(base)[0]
            found.append((name, base, required, attrs.NOTHING, None))
        return found
    result: list[tuple[str, Any, bool, Any, str | None]] = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        has_default = field.default is not dataclasses.MISSING
        required = not has_default and field.default_factory is dataclasses.MISSING
        default = field.default if has_default else attrs.NOTHING
        result.append(
            (field.name, hints.get(field.name, Any), required, default, field.metadata.get("description"))
        )
    return result


def _tag_field(members: tuple[Any, ...]) -> tuple[str, dict[Any, Any]] | None:
    """For records that each have a ``Literal`` field of one name, that name and ``{value: member}``.

    ``type`` wins if it qualifies; otherwise the first qualifying field of the
    first member. ``None`` if no field tells the members apart.
    """
    if not all(_is_record(member) for member in members):
        return None
    literals: list[dict[str, tuple[Any, ...]]] = []
    for member in members:
        fields = {name: _strip_annotated(tp) for name, tp, _, _, _ in _record_fields(member)}
        literals.append(
            {name: typing.get_args(tp) for name, tp in fields.items() if typing.get_origin(tp) is Literal}
        )
    candidates = [name for name in literals[0] if all(name in fields for fields in literals)]
    candidates.sort(key=lambda name: name != "type")
    for name in candidates:
        by_value: dict[Any, Any] = {}
        distinct = True
        for member, fields in zip(members, literals, strict=True):
            for value in fields[name]:
                distinct = distinct and value not in by_value
                by_value[value] = member
        if distinct:
            return name, by_value
    return None


def _make_converter() -> cattrs.Converter:
    """The one converter every non-pydantic message type goes through: strict about JSON types."""
    converter = cattrs.Converter()
    for tp, hook in [
        (str, _to_str),
        (int, _to_int),
        (float, _to_float),
        (bool, _to_bool),
        (uuid.UUID, _to_uuid),
        (decimal.Decimal, _to_decimal),
        (datetime.datetime, _iso_parser(datetime.datetime, "datetime")),
        (datetime.date, _iso_parser(datetime.date, "date")),
        (datetime.time, _iso_parser(datetime.time, "time")),
    ]:
        converter.register_structure_hook(tp, hook)
    for tp in (datetime.datetime, datetime.date, datetime.time):
        converter.register_unstructure_hook(tp, lambda value: value.isoformat())
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_unstructure_hook(decimal.Decimal, str)

    def literal_hook(tp: Any) -> Callable[[Any, Any], Any]:
        choices = typing.get_args(tp)
        listing = ", ".join(repr(choice) for choice in choices)

        def structure(value: Any, _: Any) -> Any:
            for choice in choices:
                # Compare type too: True == 1, but a JSON true is not the number 1.
                if value == choice and type(value) is type(choice):
                    return choice
            raise _Invalid("literal_error", f"expected {listing}, got {_short_repr(value)}")

        return structure

    def enum_hook(tp: Any) -> Callable[[Any, Any], Any]:
        members = {member.value: member for member in tp}
        listing = ", ".join(repr(value) for value in members)

        def structure(value: Any, _: Any) -> Any:
            try:
                return members[value]
            except (KeyError, TypeError):
                raise _Invalid("enum", f"expected one of {listing}, got {_short_repr(value)}") from None

        return structure

    def record_hook(tp: Any) -> Callable[[Any, Any], Any]:
        name = tp.__name__
        if _is_typeddict(tp):
            generated = _typeddict_structure(tp, converter)
        else:
            generated = cattrs.gen.make_dict_structure_fn(tp, converter)

        def structure(value: Any, _: Any) -> Any:
            if type(value) is not dict:
                raise _Invalid("object_type", f"expected an object for {name}, got {_kind(value)}")
            return generated(value, tp)

        return structure

    def tagged_union_hook(tp: Any) -> Callable[[Any, Any], Any]:
        found = _tag_field(typing.get_args(tp))
        assert found is not None
        field, by_value = found
        hooks = {value: (member, converter.get_structure_hook(member)) for value, member in by_value.items()}
        listing = ", ".join(repr(value) for value in by_value)

        def structure(value: Any, _: Any) -> Any:
            if type(value) is not dict:
                raise _Invalid("object_type", f"expected an object, got {_kind(value)}")
            if field not in value:
                raise _Invalid("missing", f"field required (one of {listing})", (field,))
            try:
                member, hook = hooks[value[field]]
            except (KeyError, TypeError):
                raise _Invalid(
                    "union_tag_invalid",
                    f"expected one of {listing}, got {_short_repr(value[field])}",
                    (field,),
                ) from None
            return hook(value, member)

        return structure

    def sequence_hook(tp: Any) -> Callable[[Any, Any], Any]:
        origin = typing.get_origin(tp) or tp
        args = typing.get_args(tp)
        item_type = args[0] if args else Any
        item_hook = converter.get_structure_hook(item_type)
        container = _CONTAINERS[origin]

        def structure(value: Any, _: Any) -> Any:
            # Only a JSON array: cattrs alone would iterate a string or an object's keys.
            if type(value) is not list:
                raise _Invalid("list_type", f"expected an array, got {_kind(value)}")
            items, errors = [], []
            for index, item in enumerate(value):
                try:
                    items.append(item_hook(item, item_type))
                except Exception as exc:
                    exc.__notes__ = [IterableValidationNote(f"@ index {index}", index, item_type)]
                    errors.append(exc)
            if errors:
                raise cattrs.errors.IterableValidationError(f"While structuring {tp!r}", errors, tp)
            return items if container is list else container(items)

        return structure

    def mapping_hook(tp: Any) -> Callable[[Any, Any], Any]:
        args = typing.get_args(tp)
        value_type = args[1] if len(args) == 2 else Any
        value_hook = converter.get_structure_hook(value_type)

        def structure(value: Any, _: Any) -> Any:
            if type(value) is not dict:
                raise _Invalid("object_type", f"expected an object, got {_kind(value)}")
            result, errors = {}, []
            for key, item in value.items():
                try:
                    result[key] = value_hook(item, value_type)
                except Exception as exc:
                    exc.__notes__ = [IterableValidationNote(f"@ key {key!r}", key, value_type)]
                    errors.append(exc)
            if errors:
                raise cattrs.errors.IterableValidationError(f"While structuring {tp!r}", errors, tp)
            return result

        return structure

    def is_sequence(tp: Any) -> bool:
        origin = typing.get_origin(tp) or tp
        if origin is tuple:
            args = typing.get_args(tp)
            return not args or (len(args) == 2 and args[1] is Ellipsis)
        return origin in _CONTAINERS

    def is_mapping(tp: Any) -> bool:
        return (typing.get_origin(tp) or tp) in (dict, Mapping)

    def is_literal(tp: Any) -> bool:
        return typing.get_origin(tp) is Literal

    def is_enum(tp: Any) -> bool:
        return isinstance(tp, type) and issubclass(tp, enum.Enum)

    def is_tagged_union(tp: Any) -> bool:
        members = _union_members(tp)
        return members is not None and type(None) not in members and _tag_field(members) is not None

    converter.register_structure_hook_factory(is_sequence, sequence_hook)
    converter.register_structure_hook_factory(is_mapping, mapping_hook)
    converter.register_structure_hook_factory(is_literal, literal_hook)
    converter.register_structure_hook_factory(is_enum, enum_hook)
    converter.register_structure_hook_factory(_is_record, record_hook)
    converter.register_structure_hook_factory(is_tagged_union, tagged_union_hook)
    return converter


def _typeddict_structure(cls: type, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Structure a ``TypedDict`` key by key, failing as cattrs does (so errors locate alike)."""
    fields = [
        (key, tp, required, converter.get_structure_hook(tp))
        for key, tp, required, _, _ in _record_fields(cls)
    ]

    def located(exc: Exception, key: str, tp: Any) -> Exception:
        exc.__notes__ = [*getattr(exc, "__notes__", ()), AttributeValidationNote(f"@ key {key}", key, tp)]
        return exc

    def structure(value: dict[str, Any], _: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        errors: list[Exception] = []
        for key, tp, required, hook in fields:
            if key not in value:
                if required:
                    errors.append(located(KeyError(key), key, tp))
                continue
            try:
                result[key] = hook(value[key], tp)
            except Exception as exc:
                errors.append(located(exc, key, tp))
        if errors:
            raise cattrs.errors.ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
        return result

    return structure


#: The sequence types a message may hold, each read from a JSON array.
_CONTAINERS: dict[Any, type] = {list: list, set: set, frozenset: frozenset, tuple: tuple}


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_converter: cattrs.Converter | None = None


def _get_converter() -> cattrs.Converter:
    global _converter
    if _converter is None:
        _converter = _make_converter()
    return _converter


def _cattrs_errors(exc: BaseException, loc: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Flatten what cattrs raised into error dicts, each ``loc`` the path from the message's root."""
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            loc = (*loc, note.name)
        elif isinstance(note, IterableValidationNote):
            loc = (*loc, note.index)
    if isinstance(exc, BaseExceptionGroup):
        return [error for sub in exc.exceptions for error in _cattrs_errors(sub, loc)]
    if isinstance(exc, _Invalid):
        return [{**exc.error, "loc": (*loc, *exc.error["loc"])}]
    if isinstance(exc, KeyError):
        return [{"loc": loc, "msg": "field required", "type": "missing"}]
    if isinstance(exc, TypeError) and not loc:
        return [{"loc": loc, "msg": "expected an object", "type": "object_type"}]
    message = str(exc) or type(exc).__name__
    return [{"loc": loc, "msg": message[:80], "type": "value_error"}]


def _check_supported(tp: Any) -> None:
    """Refuse, at declaration, the annotations the converter would only trip on per message."""
    tp = _strip_annotated(tp)
    members = _union_members(tp)
    if members is not None:
        rest = tuple(member for member in members if member is not type(None))
        if len(rest) > 1 and _tag_field(rest) is None:
            if all(_is_scalar(member) for member in rest):
                raise UnsupportedMessageType(
                    f"{_type_name(tp)}: unions of plain values are ambiguous in JSON; use one type"
                )
            raise UnsupportedMessageType(
                f"{_type_name(tp)}: give each member of the union a field of the same name "
                'holding a distinct Literal, such as type: Literal["join"], so a message says which it is'
            )


_SCALAR_TYPES = (
    str,
    int,
    float,
    bool,
    uuid.UUID,
    decimal.Decimal,
    datetime.datetime,
    datetime.date,
    datetime.time,
)


def _is_scalar(tp: Any) -> bool:
    return (
        tp in _SCALAR_TYPES
        or typing.get_origin(tp) is Literal
        or (isinstance(tp, type) and issubclass(tp, enum.Enum))
    )


def _cattrs_codec(tp: Any) -> MessageCodec:
    builder = _SchemaBuilder()
    schema = builder.schema(tp)
    converter = _get_converter()
    hook = converter.get_structure_hook(tp)
    name = _type_name(tp)

    def structure(value: Any) -> Any:
        try:
            return hook(value, tp)
        except (ValueError, TypeError, KeyError, ExceptionGroup, cattrs.errors.BaseValidationError) as exc:
            # Name the record that failed: for a tagged union, the member the tag chose.
            failed = getattr(exc, "cl", None)
            raise MessageValidationError(_cattrs_errors(exc), getattr(failed, "__name__", name)) from None

    members = _union_members(_strip_annotated(tp))
    tag = _tag_field(members) if members is not None and type(None) not in members else None
    return MessageCodec(
        type=tp,
        name=name,
        structure=structure,
        unstructure=converter.get_unstructure_hook(tp),
        schema=schema,
        definitions=builder.definitions,
        members=members if tag is not None and members is not None else (tp,),
        discriminator=tag[0] if tag is not None else None,
    )


# -- JSON Schema (for the cattrs side; pydantic makes its own) -------------------------

_FORMATS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    decimal.Decimal: {"type": "string", "format": "decimal"},
}

_JSON_DEFAULTS = (str, int, float, bool, type(None))


class _SchemaBuilder:
    """Builds JSON Schemas, collecting each record and enum class once, named by its class name."""

    def __init__(self) -> None:
        self.definitions: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, type] = {}

    def _define(self, cls: type) -> tuple[str, bool]:
        """The name ``cls`` is defined under, and whether it was defined already."""
        name = cls.__name__
        owner = self._owners.get(name)
        if owner is None:
            self._owners[name] = cls
            return name, False
        if owner is not cls:
            raise UnsupportedMessageType(
                f"two message types are called {name!r} ({_qualified(owner)} and {_qualified(cls)}); "
                "rename one: the AsyncAPI document names schemas by class name"
            )
        return name, True

    def schema(self, tp: Any) -> dict[str, Any]:
        """JSON Schema for ``tp``; records and enums are referenced, their schemas in ``definitions``."""
        tp = _strip_annotated(tp)
        if tp in (Any, object):
            return {}
        if tp in _FORMATS:
            return dict(_FORMATS[tp])
        origin = typing.get_origin(tp)
        if origin is Literal:
            values = list(typing.get_args(tp))
            kinds = {_JSON_KINDS.get(type(value)) for value in values}
            schema: dict[str, Any] = {"const": values[0]} if len(values) == 1 else {"enum": values}
            if len(kinds) == 1 and None not in kinds:
                schema["type"] = kinds.pop()
            return schema
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            name, known = self._define(tp)
            if not known:
                self.definitions[name] = {"title": name, "enum": [member.value for member in tp]}
                doc = inspect.getdoc(tp)
                if doc and doc != inspect.getdoc(enum.Enum) and not doc.startswith("An enumeration"):
                    self.definitions[name]["description"] = doc
            return {"$ref": SCHEMA_REF_PREFIX + name}
        members = _union_members(tp)
        if members is not None:
            _check_supported(tp)
            rest = tuple(member for member in members if member is not type(None))
            options = [self.schema(member) for member in rest]
            if len(rest) == 1:
                return {"anyOf": [options[0], {"type": "null"}]}
            tag = _tag_field(rest)
            assert tag is not None  # _check_supported refused the others
            union: dict[str, Any] = {"oneOf": options, "discriminator": tag[0]}
            return {"anyOf": [union, {"type": "null"}]} if len(rest) < len(members) else union
        if origin in (list, set, frozenset, tuple) or tp in (list, set, frozenset, tuple):
            args = typing.get_args(tp)
            if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
                items = [self.schema(arg) for arg in args]
                return {"type": "array", "items": items, "minItems": len(items), "maxItems": len(items)}
            result: dict[str, Any] = {"type": "array"}
            if args:
                result["items"] = self.schema(args[0])
            if origin in (set, frozenset):
                result["uniqueItems"] = True
            return result
        if origin is dict or tp is dict or origin is Mapping:
            args = typing.get_args(tp)
            if args and args[0] is not str:
                raise UnsupportedMessageType(f"{tp!r}: JSON object keys are strings; use dict[str, X]")
            return {"type": "object", "additionalProperties": self.schema(args[1]) if args else {}}
        if _is_record(tp):
            name, known = self._define(tp)
            if not known:
                self._record(tp, name)
            return {"$ref": SCHEMA_REF_PREFIX + name}
        raise UnsupportedMessageType(
            f"cannot use {tp!r} in a message; supported: attrs classes, dataclasses, TypedDict, str, "
            "int, float, bool, datetime, date, time, UUID, Decimal, Enum, Literal, X | None, list, "
            "tuple, set, dict[str, X], and tagged unions of records"
        )

    def _record(self, cls: type, name: str) -> None:
        schema: dict[str, Any] = {"type": "object", "title": name}
        self.definitions[name] = schema  # before the fields: a record may contain itself
        doc = inspect.getdoc(cls)
        if doc and not _is_default_doc(cls, doc):
            schema["description"] = doc
        properties: dict[str, Any] = {}
        required: list[str] = []
        for key, tp, is_required, default, description in _record_fields(cls):
            field_schema = self.schema(tp)
            if description:
                field_schema["description"] = description
            if is_required:
                required.append(key)
            elif isinstance(default, enum.Enum) and default is not attrs.NOTHING:
                field_schema["default"] = default.value
            elif isinstance(default, _JSON_DEFAULTS):
                field_schema["default"] = default
            properties[key] = field_schema
        schema["properties"] = properties
        if required:
            schema["required"] = required


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_default_doc(cls: type, doc: str) -> bool:
    # dataclasses and TypedDicts get a generated docstring: the signature, not a description.
    return doc.startswith(f"{cls.__name__}(") or (_is_typeddict(cls) and doc == inspect.getdoc(dict))


# -- pydantic (optional: used only if the user's types are pydantic's) -------------------


def _pydantic_base() -> type | None:
    module = sys.modules.get("pydantic")
    return None if module is None else module.BaseModel


def _uses_pydantic(tp: Any) -> bool:
    base = _pydantic_base()
    if base is None:
        return False
    tp = _strip_annotated(tp)
    if isinstance(tp, type) and issubclass(tp, base):
        return True
    return any(_uses_pydantic(arg) for arg in typing.get_args(tp) if arg is not type(None))


def _pydantic_codec(tp: Any) -> MessageCodec:
    import pydantic  # only reached when the user's type is a pydantic model

    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(tp)
    name = _type_name(_strip_annotated(tp))
    schema = _asyncapi_schema(adapter.json_schema(ref_template=SCHEMA_REF_PREFIX + "{model}"))
    definitions = schema.pop("$defs", {})
    plain = _strip_annotated(tp)
    if isinstance(plain, type) and plain.__name__ not in definitions:
        # A model is a named schema, as attrs classes are: referenced, not inlined.
        definitions[plain.__name__] = schema
        schema = {"$ref": SCHEMA_REF_PREFIX + plain.__name__}
    validate = adapter.validate_python
    members = _union_members(_strip_annotated(tp))
    discriminator = schema.get("discriminator") if members is not None else None
    # pydantic puts the tag first in the location of a discriminated union's
    # errors (("say", "text")); the member's name says it better.
    tags: dict[Any, str] = {}
    if isinstance(discriminator, str) and members is not None:
        for member in members:
            field = getattr(member, "model_fields", {}).get(discriminator)
            for value in typing.get_args(getattr(field, "annotation", None)):
                tags[value] = member.__name__

    def structure(value: Any) -> Any:
        try:
            return validate(value)
        except pydantic.ValidationError as exc:
            errors = [
                {"loc": tuple(error["loc"]), "msg": error["msg"], "type": error["type"]}
                for error in exc.errors(include_url=False)
            ]
            expected = name
            first = errors[0]["loc"][:1] if errors else ()
            if first and first[0] in tags and all(error["loc"][:1] == first for error in errors):
                expected = tags[first[0]]
                errors = [{**error, "loc": error["loc"][1:]} for error in errors]
            raise MessageValidationError(errors, expected) from None

    def unstructure(value: Any) -> Any:
        return adapter.dump_python(value, mode="json")

    return MessageCodec(
        type=tp,
        name=name,
        structure=structure,
        unstructure=unstructure,
        schema=schema,
        definitions=definitions,
        members=members if members is not None and type(None) not in members else (tp,),
        discriminator=discriminator if isinstance(discriminator, str) else None,
    )


def _asyncapi_schema(schema: Any) -> Any:
    """Pydantic's JSON Schema in AsyncAPI's dialect: ``discriminator`` is the property's name."""
    if isinstance(schema, dict):
        converted = {key: _asyncapi_schema(value) for key, value in schema.items()}
        discriminator = converted.get("discriminator")
        if isinstance(discriminator, dict):
            converted["discriminator"] = discriminator["propertyName"]
        return converted
    if isinstance(schema, list):
        return [_asyncapi_schema(item) for item in schema]
    return schema


# -- a route's declarations ----------------------------------------------------------------


@attrs.frozen(eq=False)
class RouteMessages:
    """What a WebSocket route declared about its messages, with the codecs built for them.

    Stored on the route (``APIWebSocketRoute.messages``) when it is declared, and
    found from the connection's scope by ``receive_model()`` without an argument.
    """

    receives: MessageCodec | None
    sends: MessageCodec | None
    on_invalid: OnInvalid | None

    @classmethod
    def build(cls, receives: Any, sends: Any, on_invalid: OnInvalid | None) -> RouteMessages:
        """Build the codecs now; ``UnsupportedMessageType`` if a type cannot be used."""
        return cls(
            receives=None if receives is None else message_codec(receives),
            sends=None if sends is None else message_codec(sends),
            on_invalid=on_invalid,
        )


def _route_messages(websocket: JSONSource) -> RouteMessages | None:
    route = websocket.scope.get("route")
    return getattr(route, "messages", None)


# -- receiving and sending -----------------------------------------------------------------


async def receive_model(websocket: JSONSource, model: Any = None, mode: str = "text") -> Any:
    """The next message as ``model`` (default: the route's ``receives``); see ``WebSocket.receive_model``."""
    declared = _route_messages(websocket)
    if model is None:
        if declared is None or declared.receives is None:
            raise RuntimeError(
                "receive_model() without a type needs a route declared with receives=...; "
                "pass the type (receive_model(MyMessage)) or declare it on the route"
            )
        codec = declared.receives
    else:
        codec = message_codec(model)
    on_invalid = None if declared is None else declared.on_invalid
    while True:
        try:
            data = await websocket.receive_json(mode)
        except WebSocketException as exc:
            if exc.code != 1007:  # not bad JSON or UTF-8: a binary frame, a message too big
                raise
            error = MessageValidationError(
                [{"loc": (), "msg": exc.reason, "type": "json_invalid"}], codec.name
            )
        else:
            try:
                return codec.structure(data)
            except MessageValidationError as exc:
                error = exc
        if on_invalid is None:
            raise error
        await on_invalid(websocket, error)


def jsonable(message: Any) -> Any:
    """``message`` as JSON-ready data (dicts, lists, strings, numbers): what ``WebSocket.send_model`` sends.

    For APIs that take JSON data rather than a WebSocket, such as
    ``ConnectionHub.broadcast(room, jsonable(Said(...)))``. Converted by the
    message's own class (a member of a union, or a dict, written out by what it holds).
    """
    return message_codec(type(message)).unstructure(message)
