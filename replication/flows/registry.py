"""One registry of methods: a name becomes a built flow here, and nowhere else.

Each method registers a builder per data kind: ``vector`` for flat data such as the toy 2D
densities (``data_shape == (D,)``) and ``image`` for ``(C, H, W)`` data such as MNIST. A builder
takes the data shape and a frozen options dataclass; :func:`build` turns keyword options into
that dataclass, so an unknown option or a wrong type fails before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from replication.flows.base import Flow
from replication.typed import ConfigError, choice_error, from_mapping

DataShape = tuple[int, ...]


@dataclass(frozen=True)
class Recipe:
    """How to build one method for one data kind."""

    options: type
    builder: Callable[[DataShape, Any], Flow]


_RECIPES: dict[str, dict[str, Recipe]] = {}


def register(method: str, kind: str, options: type) -> Callable:
    """Decorator: register ``builder(data_shape, options) -> Flow`` for ``method`` on ``kind``."""

    def decorate(builder: Callable[[DataShape, Any], Flow]) -> Callable[[DataShape, Any], Flow]:
        _RECIPES.setdefault(method, {})[kind] = Recipe(options, builder)
        return builder

    return decorate


def data_kind(data_shape: DataShape) -> str:
    """``vector`` for ``(D,)``, ``image`` for ``(C, H, W)``."""
    if len(data_shape) == 1:
        return "vector"
    if len(data_shape) == 3:
        return "image"
    raise ConfigError(f"data_shape {data_shape} is neither (D,) nor (C, H, W)")


def methods() -> tuple[str, ...]:
    """Every registered method name, in registration order."""
    return tuple(_RECIPES)


def recipe(method: str, data_shape: DataShape) -> Recipe:
    """The recipe for ``method`` on data of ``data_shape``; unknown names list the valid ones."""
    if method not in _RECIPES:
        raise choice_error("method", method, _RECIPES)
    kind = data_kind(tuple(data_shape))
    if kind not in _RECIPES[method]:
        raise ConfigError(f"method {method!r} has no {kind} variant yet")
    return _RECIPES[method][kind]


def options(method: str, data_shape: DataShape, values: dict[str, Any] | None = None) -> Any:
    """The method's options dataclass for this data shape, filled from ``values``."""
    return from_mapping(recipe(method, data_shape).options, values or {}, "model")


def build(method: str, data_shape: DataShape, **values: Any) -> Flow:
    """Build the flow of ``method`` for data of ``data_shape``, with defaults for unset options."""
    data_shape = tuple(data_shape)
    return recipe(method, data_shape).builder(data_shape, options(method, data_shape, values))
