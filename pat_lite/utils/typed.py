"""Settings converted to the types their dataclass declares, or one error naming field, value and type.

Values arrive as YAML (where YAML 1.1 reads `1e-4` as the string "1e-4" and `off` as False), as KEY=VALUE
overrides parsed the same way, or as Python keyword arguments. Each field's declared type (`int`, `float`,
`bool`, `str`, `X | None`, `Literal[...]`, `list[str]`, `dict[str, Any]`, unions of these) is the single
source of truth: `convert_fields(obj)` converts every field of a dataclass instance in place.

Conversions: an integral number (`1e1`, `10.0`) is accepted for an `int`, a numeric string for a number,
`none`/`null` for an optional field, YAML's booleans for the string literals `on`/`off`/`yes`/`no`, one
string for a list of strings; anything else raises `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from pat_lite.utils.errors import ConfigError

__all__ = ["convert_fields", "convert_value", "describe_type"]

_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")
_NONE_WORDS = ("none", "null", "~")


class _Mismatch(Exception):
    """The value does not fit the type (internal: turned into a ConfigError with the field's name)."""


def convert_fields(obj: Any, prefix: str = "") -> None:
    """Convert every field of the dataclass instance `obj` to its declared type (in place)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        setattr(obj, f.name, convert_value(prefix + f.name, getattr(obj, f.name), hints[f.name]))


def convert_value(name: str, value: Any, hint: Any) -> Any:
    """`value` as type `hint`, or ConfigError "name='value': expected <type>"."""
    try:
        return _convert(value, hint)
    except _Mismatch:
        raise ConfigError(f"{name}={value!r}: expected {describe_type(hint)}") from None


def describe_type(hint: Any) -> str:
    """The type in words, with an example where it helps (for error messages)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        words = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {describe_type(args[0]).removeprefix('a ').removeprefix('an ')}s (e.g. [a, b])"
    if origin is dict or hint is dict:
        return "a mapping (a section of key: value lines)"
    return {
        bool: "true or false",
        int: "an integer (e.g. 100)",
        float: "a number (e.g. 5e-5)",
        str: "a string",
        type(None): "null",
    }.get(hint, getattr(hint, "__name__", str(hint)))


def _convert(value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        # A value that already is one of the members stays as it is (e.g. None, or "auto" beside a float);
        # otherwise the first member it converts to wins, in the declared order.
        for member in args:
            if _is_exactly(value, member):
                return value
        for member in args:
            try:
                return _convert(value, member)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is Literal:
        return _literal(value, args)
    if origin is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise _Mismatch
        return [_convert(item, args[0] if args else Any) for item in items]
    if origin is dict or hint is dict:
        if value is None:  # an empty YAML section
            return {}
        if not isinstance(value, dict):
            raise _Mismatch
        return dict(value)
    if hint is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        raise _Mismatch
    if hint is bool:
        return _boolean(value)
    if hint is int:
        return _integer(value)
    if hint is float:
        return _number(value)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. output_dir=2024
        raise _Mismatch
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _Mismatch


def _is_exactly(value: Any, hint: Any) -> bool:
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if hint in (int, float, str, bool):
        return type(value) is hint
    return False


def _literal(value: Any, choices: tuple[Any, ...]) -> Any:
    for choice in choices:
        if value == choice and type(value) is type(choice):
            return choice
    if isinstance(value, bool):  # YAML 1.1 read `off`/`no`/`on`/`yes` as a boolean
        for word in _TRUE_WORDS if value else _FALSE_WORDS:
            if word in choices:
                return word
    if isinstance(value, str):
        for choice in choices:
            if isinstance(choice, str) and choice.lower() == value.strip().lower():
                return choice
    raise _Mismatch


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _Mismatch


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)  # "1e1"
        except ValueError:
            raise _Mismatch from None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise _Mismatch


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Mismatch from None
    else:
        raise _Mismatch
    if math.isnan(number):
        raise _Mismatch
    return number
