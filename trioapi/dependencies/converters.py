"""Converters from what a client sent to the types a parameter declares.

A converter is built once per parameter, from its annotation, when the route is
declared; per connection it is a plain function call. The same scalar parsers
serve strings from the query string, headers, cookies and path, and values from
a JSON body, so ``user_id: int`` accepts ``"7"`` in a query and ``7`` in JSON.

A converter raises ``Invalid`` carrying error dicts in FastAPI's shape (``type``,
``loc``, ``msg``, ``input``), with ``loc`` relative to the value: the solver
prefixes where the value came from (``("query", "user_id")``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import re
import types
import typing
import uuid
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, NoReturn, Union

import attrs

from trioapi.params import Param

__all__ = [
    "Converter",
    "Invalid",
    "UnsupportedAnnotation",
    "constrained",
    "error",
    "is_body_type",
    "json_converter",
    "prefixed",
    "sequence_type",
    "split_optional",
    "strip_annotated",
    "text_converter",
    "text_list_converter",
]

#: Turns one received value into the declared type, or raises ``Invalid``.
Converter = Callable[[Any], Any]


class Invalid(Exception):
    """A value failed to convert or validate; ``errors`` has one dict per failure."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


class UnsupportedAnnotation(Exception):
    """No converter exists for an annotation; analysis turns this into ``RouteDefinitionError``."""


def error(type_: str, msg: str, value: Any, loc: tuple[str | int, ...] = (), **ctx: Any) -> dict[str, Any]:
    """One error dict in FastAPI's shape."""
    detail: dict[str, Any] = {"type": type_, "loc": loc, "msg": msg, "input": value}
    if ctx:
        detail["ctx"] = ctx
    return detail


def _fail(type_: str, msg: str, value: Any, **ctx: Any) -> NoReturn:
    raise Invalid([error(type_, msg, value, **ctx)])


def prefixed(errors: Iterable[dict[str, Any]], loc: tuple[str | int, ...]) -> list[dict[str, Any]]:
    """The same errors with ``loc`` put in front of each one's location."""
    return [{**detail, "loc": loc + tuple(detail["loc"])} for detail in errors]


# -- annotations ---------------------------------------------------------------

_ANY_TYPES: tuple[Any, ...] = (Any, object, inspect.Parameter.empty)


def strip_annotated(tp: Any) -> Any:
    """``Annotated[X, ...]`` to ``X`` (metadata is read by the analysis, not here)."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def split_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` to ``(X, True)``; anything else to ``(tp, False)``."""
    tp = strip_annotated(tp)
    args = _union_args(tp)
    if args is None or type(None) not in args:
        return tp, False
    rest = tuple(arg for arg in args if arg is not type(None))
    return (rest[0] if len(rest) == 1 else Union[rest]), True  # noqa: UP007 - built from a tuple


_SEQUENCE_ORIGINS: dict[Any, type] = {
    list: list,
    set: set,
    frozenset: frozenset,
    tuple: tuple,
    collections.abc.Sequence: list,
    collections.abc.MutableSequence: list,
    collections.abc.Set: frozenset,
    collections.abc.MutableSet: set,
    collections.abc.Iterable: list,
}


def sequence_type(tp: Any) -> tuple[type, Any] | None:
    """``list[X]`` (and ``set``, ``tuple[X, ...]``, ``Sequence``) to ``(container, X)``; else ``None``."""
    tp = strip_annotated(tp)
    if tp in _SEQUENCE_ORIGINS:
        return _SEQUENCE_ORIGINS[tp], Any
    origin = typing.get_origin(tp)
    if origin not in _SEQUENCE_ORIGINS:
        return None
    args = typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple, args[0]
        raise UnsupportedAnnotation(f"fixed-length {tp!r} is not supported; use tuple[X, ...] or list[X]")
    return _SEQUENCE_ORIGINS[origin], (args[0] if args else Any)


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def is_body_type(tp: Any) -> bool:
    """Whether an unmarked parameter of this type is read from a JSON body (dict, list, records)."""
    inner, _ = split_optional(tp)
    if _is_record(inner):
        return True
    origin = typing.get_origin(inner) or inner
    return origin in (dict, list, collections.abc.Mapping, collections.abc.MutableMapping)


# -- scalars -------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _identity(value: Any) -> Any:
    return value


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    _fail("string_type", "value is not a valid string", value)


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    _fail("int_parsing", "value is not a valid integer", value)


def _to_float(value: Any) -> float:
    if type(value) is int or type(value) is float:
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    _fail("float_parsing", "value is not a valid number", value)


def _to_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    elif type(value) is int and value in (0, 1):
        return bool(value)
    _fail("bool_parsing", "value is not a valid boolean (use true/false, 1/0, yes/no or on/off)", value)


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    _fail("bytes_type", "value is not a valid string of bytes", value)


def _to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            pass
    _fail("uuid_parsing", "value is not a valid UUID", value)


def _to_none(value: Any) -> None:
    if value is not None:
        _fail("none_required", "value must be null", value)


def _choice_converter(choices: dict[Any, Any], type_: str) -> Converter:
    """Match a value against fixed choices, by value or by its text (``"2"`` finds ``2``)."""
    by_text = {str(value): result for value, result in choices.items()}
    listing = ", ".join(repr(value) for value in choices)

    def convert(value: Any) -> Any:
        if isinstance(value, str) and value in by_text:
            return by_text[value]
        try:
            if value in choices:
                return choices[value]
        except TypeError:  # an unhashable JSON value cannot be one of the choices
            pass
        _fail(type_, f"value is not one of {listing}", value)

    return convert


_SCALARS: dict[Any, Converter] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    bytes: _to_bytes,
    uuid.UUID: _to_uuid,
    type(None): _to_none,
}

#: What the error message lists when an annotation has no converter.
SUPPORTED = "str, int, float, bool, bytes, uuid.UUID, Enum subclasses, Literal[...], X | None"


def _scalar_converter(tp: Any) -> Converter | None:
    if tp in _ANY_TYPES:
        return _identity
    if tp in _SCALARS:
        return _SCALARS[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _choice_converter({member.value: member for member in tp}, "enum")
    if typing.get_origin(tp) is Literal:
        return _choice_converter({value: value for value in typing.get_args(tp)}, "literal_error")
    return None


def _nullable(convert: Converter) -> Converter:
    def convert_or_none(value: Any) -> Any:
        return None if value is None else convert(value)

    return convert_or_none


def _first_that_fits(converters: list[Converter], tp: Any) -> Converter:
    """For ``int | str``: the first member type that accepts the value wins."""
    names = " | ".join(getattr(arg, "__name__", repr(arg)) for arg in typing.get_args(tp))

    def convert(value: Any) -> Any:
        for attempt in converters:
            try:
                return attempt(value)
            except Invalid:
                continue
        _fail("union", f"value is not a valid {names}", value)

    return convert


def text_converter(tp: Any) -> Converter:
    """A converter for one value that arrives as text (query, path, header, cookie)."""
    tp, optional = split_optional(tp)
    members = _union_args(tp)
    if members is not None:
        return _first_that_fits([text_converter(member) for member in members], tp)
    convert = _scalar_converter(tp)
    if convert is None:
        raise UnsupportedAnnotation(f"cannot convert text to {tp!r}; supported: {SUPPORTED}")
    return _nullable(convert) if optional else convert


def text_list_converter(container: type, item_type: Any) -> Converter:
    """A converter for every value of a repeated query key or header (``list[int]``)."""
    return _items_converter(container, text_converter(item_type))


def _items_converter(container: type, convert_item: Converter) -> Converter:
    """Convert each item of a list, locating failures by index; build ``container`` from the results."""

    def convert(value: Any) -> Any:
        if not isinstance(value, list):
            _fail("list_type", "value is not a valid list", value)
        converted: list[Any] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(value):
            try:
                converted.append(convert_item(item))
            except Invalid as exc:
                errors.extend(prefixed(exc.errors, (index,)))
        if errors:
            raise Invalid(errors)
        return converted if container is list else container(converted)

    return convert


# -- JSON ------------------------------------------------------------------------


def json_converter(tp: Any, _building: dict[type, Converter] | None = None) -> Converter:
    """A converter for a value parsed from JSON: scalars, lists, dicts, attrs classes, dataclasses.

    ``_building`` holds the records whose converters are being built, so a
    class that refers to itself (a tree) gets a converter that refers to itself.
    """
    building = {} if _building is None else _building
    tp, optional = split_optional(tp)
    convert = _json_converter(tp, building)
    return _nullable(convert) if optional else convert


def _json_converter(tp: Any, building: dict[type, Converter]) -> Converter:
    scalar = _scalar_converter(tp)
    if scalar is not None:
        return scalar
    members = _union_args(tp)
    if members is not None:
        return _first_that_fits([json_converter(member, building) for member in members], tp)
    sequence = sequence_type(tp)
    if sequence is not None:
        container, item_type = sequence
        return _items_converter(container, json_converter(item_type, building))
    origin = typing.get_origin(tp) or tp
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        args = typing.get_args(tp)
        key_type, value_type = args if len(args) == 2 else (str, Any)
        return _json_mapping(text_converter(key_type), json_converter(value_type, building))
    if _is_record(tp):
        return _record_converter(tp, building)
    raise UnsupportedAnnotation(
        f"cannot read {tp!r} from JSON; supported: {SUPPORTED}, list[X], dict[str, X], "
        "attrs classes and dataclasses"
    )


def _json_mapping(convert_key: Converter, convert_value: Converter) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            _fail("dict_type", "value is not a valid object", value)
        converted: dict[Any, Any] = {}
        errors: list[dict[str, Any]] = []
        for key, item in value.items():
            try:
                converted[convert_key(key)] = convert_value(item)
            except Invalid as exc:
                errors.extend(prefixed(exc.errors, (key,)))
        if errors:
            raise Invalid(errors)
        return converted

    return convert


def _record_fields(cls: type) -> list[tuple[str, Any, bool]]:
    """``(init argument name, type, required)`` for each field ``cls.__init__`` takes."""
    try:
        if attrs.has(cls):
            attrs.resolve_types(cls)
            return [
                (field.alias, field.type if field.type is not None else Any, field.default is attrs.NOTHING)
                for field in attrs.fields(cls)
                if field.init
            ]
        hints = typing.get_type_hints(cls)
    except NameError as exc:
        raise UnsupportedAnnotation(f"cannot resolve the field types of {cls.__qualname__}: {exc}") from None
    return [
        (
            field.name,
            hints.get(field.name, Any),
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING,
        )
        for field in dataclasses.fields(cls)
        if field.init
    ]


def _record_converter(cls: type, building: dict[type, Converter]) -> Converter:
    if cls in building:
        return building[cls]
    # Registered before the fields are analysed, so a field of type ``cls`` (or
    # of a class that refers back to it) finds this converter through the cell.
    cell: list[Converter] = []
    building[cls] = lambda value: cell[0](value)
    fields = [(name, json_converter(tp, building), required) for name, tp, required in _record_fields(cls)]

    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            _fail("dict_type", f"value is not a valid object for {cls.__name__}", value)
        kwargs: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for name, convert_field, required in fields:
            if name not in value:
                if required:
                    errors.append(error("missing", "field required", None, (name,)))
                continue
            try:
                kwargs[name] = convert_field(value[name])
            except Invalid as exc:
                errors.extend(prefixed(exc.errors, (name,)))
        if errors:
            raise Invalid(errors)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # the class's own validators said no
            _fail("value_error", str(exc) or f"value is not a valid {cls.__name__}", value)

    cell.append(convert)
    building[cls] = convert
    return convert


# -- constraints ---------------------------------------------------------------

_NUMBER_TYPES = (int, float)


def _length_words(tp: Any) -> tuple[str, str]:
    if tp is str:
        return "string", "characters"
    if tp is bytes:
        return "bytes", "bytes"
    return "", "items"


def constrained(convert: Converter, marker: Param, tp: Any) -> Converter:
    """Wrap ``convert`` with the marker's ``gt ge lt le min_length max_length pattern`` checks.

    ``tp`` is the parameter's type without ``| None``; a constraint that cannot
    apply to it (``gt`` on a string) is refused here, at declaration time.
    """
    checks: list[Callable[[Any], None]] = []
    numeric = isinstance(tp, type) and issubclass(tp, _NUMBER_TYPES) and tp is not bool
    sized = tp in (str, bytes) or sequence_type(tp) is not None

    bounds = [
        ("gt", marker.gt, "greater_than", "greater than", lambda v, b: v > b),
        ("ge", marker.ge, "greater_than_equal", "greater than or equal to", lambda v, b: v >= b),
        ("lt", marker.lt, "less_than", "less than", lambda v, b: v < b),
        ("le", marker.le, "less_than_equal", "less than or equal to", lambda v, b: v <= b),
    ]
    for name, bound, type_, words, holds in bounds:
        if bound is None:
            continue
        if not numeric:
            raise UnsupportedAnnotation(f"{name}= applies to int and float values, not {tp!r}")
        checks.append(_bound_check(bound, type_, f"value must be {words} {bound}", holds, name))

    prefix, unit = _length_words(tp)
    lengths = [("min_length", marker.min_length, True), ("max_length", marker.max_length, False)]
    for name, limit, short in lengths:
        if limit is None:
            continue
        if not sized:
            raise UnsupportedAnnotation(f"{name}= applies to str, bytes and list values, not {tp!r}")
        type_ = (f"{prefix}_too_short" if short else f"{prefix}_too_long").lstrip("_")
        words = f"at least {limit}" if short else f"at most {limit}"
        checks.append(_length_check(limit, short, type_, f"value must have {words} {unit}", name))

    if marker.pattern is not None:
        if tp is not str:
            raise UnsupportedAnnotation(f"pattern= applies to str values, not {tp!r}")
        try:
            regex = re.compile(marker.pattern)
        except re.error as exc:
            raise UnsupportedAnnotation(f"pattern={marker.pattern!r} is not a valid regex: {exc}") from None
        checks.append(_pattern_check(regex))

    if not checks:
        return convert

    def convert_and_check(value: Any) -> Any:
        result = convert(value)
        if result is not None:
            for check in checks:
                check(result)
        return result

    return convert_and_check


def _bound_check(
    bound: float, type_: str, msg: str, holds: Callable[[Any, float], bool], name: str
) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not holds(value, bound):
            _fail(type_, msg, value, **{name: bound})

    return check


def _length_check(limit: int, short: bool, type_: str, msg: str, name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        size = len(value)
        if (size < limit) if short else (size > limit):
            _fail(type_, msg, value, **{name: limit})

    return check


def _pattern_check(regex: re.Pattern[str]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if regex.search(value) is None:
            _fail("string_pattern_mismatch", f"value does not match the pattern {regex.pattern!r}", value)

    return check
