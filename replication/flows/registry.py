"""One registry of methods: a name becomes a built flow here, and nowhere else.

Each method registers a builder per data kind: ``vector`` for flat data such as the toy 2D
densities (``data_shape == (D,)``) and ``image`` for ``(C, H, W)`` data such as MNIST. A builder
takes the data shape and a frozen options dataclass. A config is parsed once, at its boundary
(:mod:`replication.config` calls :func:`options`), and :func:`build_from_options` builds from
the parsed dataclass; :func:`build` is the short form for code and tests, turning keyword
options into that dataclass, so an unknown option or a wrong type fails before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from replication.flows.base import Flow
from replication.typed import ConfigError, choice_error, from_mapping

DataShape = tuple[int, ...]


@dataclass(frozen=True)
class Recipe:
    """How to build one method for one data kind, and the budgets its checks use.

    ``tiny`` are the options of a tiny model of the method, which the float64 unit tests build
    for every registered method (small sizes; tight solver tolerances for ODE flows).
    ``check_iterations`` (vector data) are the training iterations the Gaussian-data check
    gives the method (``replication.checks.trained``): enough to end within noise of the
    entropy.
    """

    options: type
    builder: Callable[[DataShape, Any], Flow]
    tiny: Mapping[str, Any]
    check_iterations: int | None = None


_RECIPES: dict[str, dict[str, Recipe]] = {}


def register(
    method: str,
    kind: str,
    options: type,
    *,
    tiny: Mapping[str, Any],
    check_iterations: int | None = None,
) -> Callable:
    """Decorator: register ``builder(data_shape, options) -> Flow`` for ``method`` on ``kind``,
    with the options of its tiny test model (and, on vector data, its check budget)."""
    if kind == "vector" and check_iterations is None:
        raise TypeError(f"{method}: a vector recipe states its check_iterations")

    def decorate(builder: Callable[[DataShape, Any], Flow]) -> Callable[[DataShape, Any], Flow]:
        recipe = Recipe(options, builder, tiny, check_iterations)
        _RECIPES.setdefault(method, {})[kind] = recipe
        return builder

    return decorate


def data_kind(data_shape: DataShape) -> str:
    """``vector`` for ``(D,)``, ``image`` for ``(C, H, W)``."""
    if len(data_shape) == 1:
        return "vector"
    if len(data_shape) == 3:
        return "image"
    raise ConfigError(f"data_shape {data_shape} is neither (D,) nor (C, H, W)")


def methods(kind: str | None = None) -> tuple[str, ...]:
    """Every registered method name (with a ``kind`` variant, if given), in registration order."""
    return tuple(name for name, kinds in _RECIPES.items() if kind is None or kind in kinds)


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


def build_from_options(method: str, data_shape: DataShape, parsed: Any) -> Flow:
    """Build the flow of ``method`` for data of ``data_shape`` from its parsed options."""
    data_shape = tuple(data_shape)
    chosen = recipe(method, data_shape)
    if not isinstance(parsed, chosen.options):
        raise TypeError(f"{method} on {data_shape} takes {chosen.options.__name__}, got {parsed!r}")
    return chosen.builder(data_shape, parsed)


def build(method: str, data_shape: DataShape, **values: Any) -> Flow:
    """Build the flow of ``method`` for data of ``data_shape``, with defaults for unset options."""
    return build_from_options(method, data_shape, options(method, data_shape, values))
