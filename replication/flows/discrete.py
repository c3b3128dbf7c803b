"""The discrete flows on vector data: NICE, RealNVP and Glow, registered for the ``vector`` kind.

Defaults follow FFJORD's discrete toy baselines (10 coupling layers of alternating halves,
MLP conditioners with two hidden layers of 64 ReLU units, scale sigmoid(s + 2)); NICE and
Glow use the same depth and widths so the three differ only in what the papers change:

- NICE (Dinh et al. 2014): additive couplings, then a diagonal scaling; Gaussian or logistic base.
- RealNVP (Dinh et al. 2017): affine couplings.
- Glow (Kingma & Dhariwal 2018): each step is actnorm -> invertible linear map (LU) -> affine
  coupling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from replication.flows.base import (
    BaseDistribution,
    Bijection,
    Chain,
    Flow,
    StandardLogistic,
    StandardNormal,
)
from replication.flows.coupling import (
    Shift,
    SigmoidScaleShift,
    SoftClampScaleShift,
    Transformer,
    VectorCoupling,
    alternating_halves,
)
from replication.flows.linear import ActNorm, DiagonalScale, InvertibleLinear
from replication.flows.registry import DataShape, register
from replication.typed import ConfigError, PositiveInt

Base = Literal["normal", "logistic"]


@dataclass(frozen=True)
class NiceVectorOptions:
    couplings: PositiveInt = 10
    hidden: tuple[PositiveInt, ...] = (64, 64)
    base: Base = "normal"


@dataclass(frozen=True)
class RealNVPVectorOptions:
    couplings: PositiveInt = 10
    hidden: tuple[PositiveInt, ...] = (64, 64)


@dataclass(frozen=True)
class GlowVectorOptions:
    steps: PositiveInt = 10
    hidden: tuple[PositiveInt, ...] = (64, 64)


def base_distribution(name: Base, shape: DataShape) -> BaseDistribution:
    """The latent density: standard normal, or the standard logistic NICE used on images."""
    return StandardLogistic(shape) if name == "logistic" else StandardNormal(shape)


def _feature_count(data_shape: DataShape, depth: int) -> int:
    (dim,) = data_shape
    if dim < 2:
        raise ConfigError(f"coupling flows need at least 2 features, got data_shape {data_shape}")
    if depth < 1:
        raise ConfigError(f"model.couplings (model.steps for Glow) must be >= 1, got {depth}")
    return dim


def _couplings(
    dim: int, depth: int, hidden: tuple[int, ...], transformer: type[Transformer]
) -> list[Bijection]:
    return [
        VectorCoupling(*alternating_halves(dim, layer), transformer(), hidden)
        for layer in range(depth)
    ]


# The tiny model the unit tests build of each coupling flow.
TINY = {"couplings": 4, "hidden": (8,)}


@register("nice", "vector", NiceVectorOptions, tiny=TINY, check_iterations=400)
def build_nice(data_shape: DataShape, options: NiceVectorOptions) -> Flow:
    dim = _feature_count(data_shape, options.couplings)
    steps = _couplings(dim, options.couplings, options.hidden, Shift)
    return Flow(Chain(*steps, DiagonalScale((dim,))), base_distribution(options.base, data_shape))


@register("realnvp", "vector", RealNVPVectorOptions, tiny=TINY, check_iterations=400)
def build_realnvp(data_shape: DataShape, options: RealNVPVectorOptions) -> Flow:
    dim = _feature_count(data_shape, options.couplings)
    steps = _couplings(dim, options.couplings, options.hidden, SoftClampScaleShift)
    return Flow(Chain(*steps), StandardNormal(data_shape))


@register(
    "glow", "vector", GlowVectorOptions, tiny={"steps": 3, "hidden": (8,)}, check_iterations=400
)
def build_glow(data_shape: DataShape, options: GlowVectorOptions) -> Flow:
    dim = _feature_count(data_shape, options.steps)
    couplings = _couplings(dim, options.steps, options.hidden, SigmoidScaleShift)
    steps = [Chain(ActNorm(dim), InvertibleLinear(dim), coupling) for coupling in couplings]
    return Flow(Chain(*steps), StandardNormal(data_shape))
