"""Plain mappings (parsed YAML) to frozen dataclasses, checking every key and type on the way.

This is the one place where untyped configuration becomes typed objects. Supported field
types: ``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``Literal[...]``,
``tuple[T, ...]`` (from a YAML list), ``X | None`` and nested frozen dataclasses. Anything
else is a programming error, reported as such.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem the user can fix: the message names it and the valid choices."""


def choice_error(what: str, given: object, valid: typing.Iterable[str]) -> ConfigError:
    """An error for an unknown name, listing every valid one."""
    return ConfigError(f"unknown {what} {given!r}; valid choices: {', '.join(sorted(valid))}")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``: unknown keys and wrong types raise ConfigError."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r}; valid keys"
            f"{' in ' + where if where else ''}: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], data[name], _join(where, name)) for name in data}
    return cls(**values)


def to_mapping(obj: object) -> Any:
    """A dataclass (possibly nested) as plain JSON/YAML-ready data; tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_mapping(item) for item in obj]
    if isinstance(obj, Mapping):
        return {key: to_mapping(value) for key, value in obj.items()}
    return obj


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(
            errors[0]
            if len(errors) == 1
            else f"{where}: {_describe(value)} fits none of {', '.join(_name(o) for o in options)}"
        )
    if origin is Literal:
        if value not in args:
            raise choice_error(f"value for {where}:", value, [str(a) for a in args])
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        item_hint = args[0]
        return tuple(_convert(item_hint, item, f"{where}[{i}]") for i, item in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_mapping(hint, value, where)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint in (int, bool, str):
        if type(value) is hint:
            return value
    else:
        raise TypeError(f"{where}: unsupported field type {hint!r}")
    raise ConfigError(f"{where}: expected {_name(hint)}, got {_describe(value)}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
