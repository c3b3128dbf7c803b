"""NICE on images (Dinh et al. 2014, Sec. 5.1): additive couplings on the flattened image.

    x -> [logit] -> flatten -> 4 additive couplings -> diagonal scaling -> standard logistic.

Each coupling keeps one half of the D pixels and shifts the other by an MLP of the kept half,
y_b = x_b + m(x_a), so its Jacobian determinant is 1; the final scaling y = exp(s) * x carries
all the volume change, log|det| = sum(s). NICE's MNIST model: 4 couplings, MLPs of 5 hidden
ReLU layers of 1000 units, a standard logistic prior. The halves alternate between couplings;
NICE partitions by odd and even components, which ``partition = "interleaved"`` follows
(pixel i is in the first half when i is even); ``"halves"`` takes the first and last D/2.

Preprocessing: NICE models the dequantized pixels in [0, 1] directly, with no logit
(``logit_alpha: null``, the paper config): then log p(x) = log p_z(f(x)) + log|det df/dx|
is already the density on [0, 1]^D. The CPU config keeps the logit transform with alpha
0.05 (the default, RealNVP's value), whose Jacobian is included, so bits/dim are comparable
either way. ``init_uniform: a`` draws every coupling weight from U(-a, a) with zero biases
(NICE's code: a = 0.01 for the weights; zero biases are our choice, the source names none);
null keeps torch's default initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import nn

from replication.flows.base import Chain, Flow
from replication.flows.coupling import Shift, VectorCoupling
from replication.flows.discrete import Base, base_distribution
from replication.flows.images.layers import Flatten, LogitTransform, check_image_shape
from replication.flows.linear import DiagonalScale
from replication.flows.registry import DataShape, register
from replication.typed import ConfigError, LogitAlpha, PositiveInt


@dataclass(frozen=True)
class NiceImageOptions:
    """Defaults: NICE's MNIST model (docs/sources.md), but with a logit and torch's init."""

    couplings: PositiveInt = 4
    hidden: tuple[PositiveInt, ...] = (1000, 1000, 1000, 1000, 1000)
    partition: Literal["interleaved", "halves"] = "interleaved"
    base: Base = "logistic"
    logit_alpha: LogitAlpha | None = 0.05  # None: no logit, the [0, 1] pixels as they are
    init_uniform: float | None = None  # weights ~ U(-a, a), biases 0; None: torch's default

    def __post_init__(self) -> None:
        scale = self.init_uniform
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"model.init_uniform must be a positive number or null, got {scale}")


def partition(dim: int, layer: int, kind: str) -> tuple[list[int], list[int]]:
    """(kept, changed) pixel indices of coupling ``layer``; the roles swap every layer."""
    if kind == "interleaved":
        first, second = list(range(0, dim, 2)), list(range(1, dim, 2))
    else:
        first, second = list(range(dim // 2)), list(range(dim // 2, dim))
    return (first, second) if layer % 2 == 0 else (second, first)


@register("nice", "image", NiceImageOptions, tiny={"couplings": 4, "hidden": (8,)})
def build_nice_image(data_shape: DataShape, options: NiceImageOptions) -> Flow:
    shape = check_image_shape(tuple(data_shape), 0)
    dim = math.prod(shape)
    if options.couplings < 1 or dim < 2:
        raise ConfigError(f"NICE needs couplings >= 1 and D >= 2, got {options.couplings}, {dim}")
    couplings = [
        VectorCoupling(*partition(dim, layer, options.partition), Shift(), options.hidden)
        for layer in range(options.couplings)
    ]
    if options.init_uniform is not None:
        _init_uniform(couplings, options.init_uniform)
    logit = [] if options.logit_alpha is None else [LogitTransform(options.logit_alpha)]
    transform = Chain(*logit, Flatten(shape), *couplings, DiagonalScale((dim,)))
    return Flow(transform, base_distribution(options.base, (dim,)))


def _init_uniform(couplings: list[VectorCoupling], scale: float) -> None:
    """NICE's initialisation: every weight from U(-scale, scale), every bias 0."""
    for coupling in couplings:
        for layer in coupling.modules():
            if isinstance(layer, nn.Linear):
                nn.init.uniform_(layer.weight, -scale, scale)
                nn.init.zeros_(layer.bias)
