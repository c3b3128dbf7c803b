"""Plain mappings (parsed YAML) to frozen dataclasses, checking every key and type on the way.

This is the one place where untyped configuration becomes typed objects. Supported field
types: ``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``Literal[...]``,
``tuple[T, ...]`` (from a YAML list), ``X | None`` and nested frozen dataclasses. Anything
else is a programming error, reported as such.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

T = TypeVar("T")
INT64 = 2**63  # torch and NumPy integers: larger values overflow far from the config


@dataclass(frozen=True)
class Bounds:
    """The range a number must lie in, as ``Annotated`` metadata: ``Annotated[int, AT_LEAST_1]``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        """``> 0``, ``>= 1`` or ``in (0, 0.5)``."""
        low = None if self.low is None else _number(self.low)
        high = None if self.high is None else _number(self.high)
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(value: float) -> str:
    """Integers exactly (a seed's bound must not read 9.22337e+18), floats briefly."""
    return str(value) if isinstance(value, int) else f"{value:g}"


# The ranges most settings need; a field with another range writes its own Annotated.
PositiveInt = Annotated[int, Bounds(low=1)]
NonNegativeInt = Annotated[int, Bounds(low=0)]
PositiveFloat = Annotated[float, Bounds(low=0, low_open=True)]
NonNegativeFloat = Annotated[float, Bounds(low=0)]
# The logit transform's margin: s = alpha + (1 - 2 alpha) x stays inside (0, 1).
LogitAlpha = Annotated[float, Bounds(low=0, high=0.5, low_open=True, high_open=True)]


class ConfigError(ValueError):
    """A configuration problem the user can fix: the message names it and the valid choices."""


def read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON file ``path``; ConfigError naming it when it is missing or damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{what} {path} cannot be read: {error}") from None


def at_least(minimum: int) -> typing.Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum``, else argparse's usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


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
    hints = typing.get_type_hints(cls, include_extras=True)
    values = {name: _convert(hints[name], data[name], _join(where, name)) for name in data}
    try:
        return cls(**values)
    except ConfigError as error:  # a check across fields in __post_init__: say where
        message = str(error)
        if where and not message.startswith(where):
            message = f"{where}: {message}"
        raise ConfigError(message) from None


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


def _convert(hint: Any, value: Any, where: str, nullable: bool = False) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        bounds = [meta for meta in hint.__metadata__ if isinstance(meta, Bounds)]
        return _bounded(args[0], bounds, value, where, nullable)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, where, nullable=type(None) in args)
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
            number = float(value) if -INT64 < value < INT64 else math.inf  # no OverflowError
            if not math.isfinite(number):
                raise ConfigError(f"{where} must be a finite number, got {value!r}")
            return number
    elif hint is int and type(value) is int and not -INT64 <= value < INT64:
        raise ConfigError(f"{where} must fit in 64 bits (|value| < 2**63), got {value}")
    elif hint in (int, bool, str):
        if type(value) is hint:
            return value
    else:
        raise TypeError(f"{where}: unsupported field type {hint!r}")
    raise ConfigError(f"{where}: expected {_name(hint)}, got {_describe(value)}")


def _bounded(hint: Any, bounds: list[Bounds], value: Any, where: str, nullable: bool) -> Any:
    """``value`` converted to ``hint`` and checked against every bound; NaN and infinity fail
    with the range in the message, as any other number outside it."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (hint is float or type(value) is int):
        finite = not isinstance(value, float) or math.isfinite(value)
        if not finite or not all(bound.contains(value) for bound in bounds):
            ranges = " and ".join(bound.describe() for bound in bounds)
            kind = "an integer " if hint is int else "a finite number "
            raise ConfigError(
                f"{where} must be {kind}{ranges}{' or null' if nullable else ''}, got {value!r}"
            )
    return _convert(hint, value, where)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
