"""``jsonable_encoder``: what FastAPI's ``fastapi.encoders`` offers, for trioapi's types.

Turns what an endpoint returns into data ``json.dumps`` can write: attrs
classes and dataclasses (their fields, by name), pydantic models
(``model_dump(mode="json")``), enums, dates and times, UUIDs, decimals, sets
and tuples, at any depth. No type annotation is read, so classes defined
anywhere work. (Typed WebSocket messages are written by their declared type
instead: ``trioapi.messages.jsonable``.) ``JSONResponse`` uses it for whatever
the ``json`` module cannot write by itself, so plain dicts and lists cost
nothing more.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import attrs

__all__ = ["jsonable_encoder"]


def jsonable_encoder(obj: Any) -> Any:
    """``obj`` as JSON-ready data: dicts with string keys, lists, strings, numbers, booleans and ``None``."""
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, Mapping):
        return {str(jsonable_encoder(key)): jsonable_encoder(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable_encoder(item) for item in obj]
    return jsonable_encoder(json_default(obj))


def json_default(obj: Any) -> Any:
    """One step towards JSON for an object ``json.dumps`` cannot write (its ``default=`` hook)."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, datetime.date | datetime.time):  # datetime is a date
        return obj.isoformat()
    if isinstance(obj, datetime.timedelta):
        return obj.total_seconds()
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, uuid.UUID | PurePath):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if attrs.has(type(obj)):
        return {field.name: getattr(obj, field.name) for field in attrs.fields(type(obj))}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
    if hasattr(obj, "model_dump"):  # a pydantic model
        return obj.model_dump(mode="json")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
