"""Strict conversion between frozen dataclasses and JSON values.

Used by the pack manifest and by compile configs, so that every config and manifest round-trips
through JSON the same way and a malformed file is reported with the path of the bad field
(``components[0].graphs[1].sha256: expected str, got int``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import EdgemmError

__all__ = ["from_json", "to_json"]

T = TypeVar("T")

_NONE_TYPE = type(None)


def to_json(obj: Any) -> Any:
    """Converts a dataclass tree (dataclasses, tuples, dicts, primitives) to plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_json(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def from_json(cls: type[T], data: Any, *, error: type[EdgemmError], path: str = "") -> T:
    """Builds ``cls`` (a dataclass) from JSON values, checking every field's type.

    Raises:
        error: with the path of the first field that is missing, unknown or of the wrong type.
    """
    return typing.cast(T, _convert(cls, data, error, path or cls.__name__))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {value}"
    if isinstance(value, (int, float)):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"str {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, error: type[EdgemmError], path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and _NONE_TYPE in args:
            return None
        failures = []
        for arg in args:
            if arg is _NONE_TYPE:
                continue
            try:
                return _convert(arg, value, error, path)
            except error as exc:
                failures.append(str(exc))
        raise error(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise error(f"{path}: expected one of {list(args)}, got {_describe(value)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, error, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise error(f"{path}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, error, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise error(f"{path}: expected a list of {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, error, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=False)))
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise error(f"{path}: expected an object, got {_describe(value)}")
        value_type = args[1] if args else Any
        return {str(k): _convert(value_type, v, error, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    else:
        raise TypeError(f"{path}: unsupported field type {tp!r}")
    raise error(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")


def _convert_dataclass(cls: type, value: Any, error: type[EdgemmError], path: str) -> Any:
    if not isinstance(value, dict):
        raise error(f"{path}: expected an object, got {_describe(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise error(f"{path}: unknown field(s) {unknown}; expected only {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        if name not in value:
            has_default = (
                field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            )
            if has_default:
                continue
            raise error(f"{path}: missing required field '{name}'")
        kwargs[name] = _convert(hints[name], value[name], error, f"{path}.{name}")
    try:
        return cls(**kwargs)
    except EdgemmError:
        raise
    except (TypeError, ValueError) as exc:
        raise error(f"{path}: {exc}") from exc
