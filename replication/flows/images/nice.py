"""NICE on images (Dinh et al. 2014, Sec. 5.1): additive couplings on the flattened image.

    x -> logit -> flatten -> 4 additive couplings -> diagonal scaling -> standard logistic.

Each coupling keeps one half of the D pixels and shifts the other by an MLP of the kept half,
y_b = x_b + m(x_a), so its Jacobian determinant is 1; the final scaling y = exp(s) * x carries
all the volume change, log|det| = sum(s). NICE's MNIST model: 4 couplings, MLPs of 5 hidden
ReLU layers of 1000 units, a standard logistic prior. The halves alternate between couplings;
NICE partitions by odd and even components, which ``partition = "interleaved"`` follows
(pixel i is in the first half when i is even); ``"halves"`` takes the first and last D/2.

NICE itself models [0, 1] pixel values directly (no logit). Every image flow here starts with
the logit transform, so ours does too; the default ``logit_alpha = 0.05`` is RealNVP's, the
largest of the reference values: it bounds the transformed data to about [-2.9, 2.9], the
closest of them to NICE's bounded raw input. The density is still that of the image on
[0, 1]^D (the logit's Jacobian is included), so bits/dim stay comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from replication.flows.base import Chain, Flow
from replication.flows.coupling import Shift, VectorCoupling
from replication.flows.discrete import Base, base_distribution
from replication.flows.images.layers import Flatten, LogitTransform, check_image_shape
from replication.flows.linear import DiagonalScale
from replication.flows.registry import DataShape, register
from replication.typed import ConfigError, LogitAlpha, PositiveInt


@dataclass(frozen=True)
class NiceImageOptions:
    """Defaults: NICE's MNIST model (REFERENCES section 3)."""

    couplings: PositiveInt = 4
    hidden: tuple[PositiveInt, ...] = (1000, 1000, 1000, 1000, 1000)
    partition: Literal["interleaved", "halves"] = "interleaved"
    base: Base = "logistic"
    logit_alpha: LogitAlpha = 0.05


def partition(dim: int, layer: int, kind: str) -> tuple[list[int], list[int]]:
    """(kept, changed) pixel indices of coupling ``layer``; the roles swap every layer."""
    if kind == "interleaved":
        first, second = list(range(0, dim, 2)), list(range(1, dim, 2))
    else:
        first, second = list(range(dim // 2)), list(range(dim // 2, dim))
    return (first, second) if layer % 2 == 0 else (second, first)


@register("nice", "image", NiceImageOptions)
def build_nice_image(data_shape: DataShape, options: NiceImageOptions) -> Flow:
    shape = check_image_shape(tuple(data_shape), 0)
    dim = math.prod(shape)
    if options.couplings < 1 or dim < 2:
        raise ConfigError(f"NICE needs couplings >= 1 and D >= 2, got {options.couplings}, {dim}")
    couplings = [
        VectorCoupling(*partition(dim, layer, options.partition), Shift(), options.hidden)
        for layer in range(options.couplings)
    ]
    transform = Chain(
        LogitTransform(options.logit_alpha), Flatten(shape), *couplings, DiagonalScale((dim,))
    )
    return Flow(transform, base_distribution(options.base, (dim,)))
