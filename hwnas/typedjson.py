"""Frozen dataclasses to JSON and back, their field types checked on the way in.

Stage results and other records are written as plain JSON (diffable, readable without hwnas) and read
back into the dataclass that wrote them. Reading checks every field against its annotation (``int``,
``float``, ``str``, ``bool``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``, nested
dataclasses, ``Any``), so a hand-edited or truncated file is one line naming the file and the field,
never a ``KeyError`` three stages later. A field missing from the file takes the dataclass default
(files written before the field existed still load); a missing field without a default is an error.
Keys the dataclass does not know are ignored: they were written by an older hwnas and nothing reads them.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from hwnas.errors import UserError

T = TypeVar("T")


class RecordError(UserError):
    """A stored record whose content does not fit the type that reads it."""


RANGES = {
    "fraction": ("in [0, 1]", lambda value: 0.0 <= value <= 1.0),  # accuracies
    "positive": ("above 0", lambda value: value > 0),  # latencies, budgets, ratios
}


def checked(kind: str) -> dict[str, str]:
    """Field metadata: the range a number (or each number of a list or dict) must be in, checked on read.

    ``accuracy: float = field(metadata=checked("fraction"))``; kinds: ``fraction`` (0-1), ``positive`` (> 0).
    """
    if kind not in RANGES:
        raise ValueError(f"unknown range {kind!r}")
    return {"range": kind}


def to_json(value: Any) -> Any:
    """``value`` (a dataclass, or lists / dicts of them) as JSON-able plain data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    return value


def from_json(cls: type[T], data: Any, where: str) -> T:
    """``data`` read as ``cls`` (a dataclass); :class:`RecordError` naming ``where`` and the field when it does not fit."""
    return typing.cast(T, _convert(cls, data, where))


def _convert(kind: Any, data: Any, where: str) -> Any:
    if kind is Any or kind is object:
        return data
    origin = get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return _union(kind, data, where)
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, data, where)
    if origin in (list, tuple):
        return _sequence(kind, origin, data, where)
    if origin is dict:
        if not isinstance(data, dict):
            raise _mismatch(where, "an object", data)
        value_type = get_args(kind)[1] if get_args(kind) else Any
        return {str(key): _convert(value_type, item, f"{where}.{_shown_key(key)}") for key, item in data.items()}
    if kind in (list, tuple, dict):
        return _convert(kind[Any] if kind is not dict else dict[str, Any], data, where)
    return _scalar(kind, data, where)


def _union(kind: Any, data: Any, where: str) -> Any:
    options = get_args(kind)
    if data is None:
        if type(None) in options:
            return None
        raise _mismatch(where, _describe(kind), data)
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _convert(option, data, where)
        except RecordError as error:
            errors.append(error)
    raise errors[0] if len(errors) == 1 else _mismatch(where, _describe(kind), data)


def _dataclass(kind: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise _mismatch(where, "an object", data)
    hints = get_type_hints(kind)
    values = {}
    for item in dataclasses.fields(kind):
        if not item.init:
            continue
        if item.name in data:
            values[item.name] = _convert(hints[item.name], data[item.name], f"{where}.{item.name}")
            if "range" in item.metadata:
                _check_range(values[item.name], item.metadata["range"], f"{where}.{item.name}")
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            raise RecordError(f"{where}: field {item.name!r} is missing")
    return kind(**values)


def _check_range(value: Any, kind: str, where: str) -> None:
    """``value`` (a number, or the numbers of a list or dict; ``None`` passes) within the range ``kind`` names."""
    text, test = RANGES[kind]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else [value]
    for item in items:
        if isinstance(item, int | float) and not isinstance(item, bool) and not test(item):
            raise RecordError(f"{where}: {item!r} is not {text}")


def _sequence(kind: Any, origin: Any, data: Any, where: str) -> Any:
    if not isinstance(data, list | tuple):
        raise _mismatch(where, "a list", data)
    args = get_args(kind)
    item_type = args[0] if args else Any
    items = [_convert(item_type, item, f"{where}[{index}]") for index, item in enumerate(data)]
    return tuple(items) if origin is tuple else items


def _scalar(kind: Any, data: Any, where: str) -> Any:
    if kind is bool:
        if isinstance(data, bool):
            return data
    elif kind is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif kind is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            if not math.isfinite(data):
                raise RecordError(f"{where}: {data!r} is not a finite number")
            return float(data)
    elif kind is str:
        if isinstance(data, str):
            return data
    else:
        raise TypeError(f"typedjson cannot read {kind!r} ({where})")
    raise _mismatch(where, _describe(kind), data)


def _describe(kind: Any) -> str:
    if get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in get_args(kind))
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "text", type(None): "null"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _mismatch(where: str, expected: str, data: Any) -> RecordError:
    shown = repr(data)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return RecordError(f"{where}: expected {expected}, found {shown}")


def _shown_key(key: object) -> str:
    """A key as an error line names it: as it is when printable, else quoted with escapes (a control character such
    as U+001E would otherwise split the one-line error in two)."""
    text = str(key)
    return text if text.isprintable() else repr(text)
