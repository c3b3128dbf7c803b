"""RealNVP on images (Dinh et al. 2017, Sec. 3-4): affine couplings in a multi-scale flow.

    x -> logit -> [3 checkerboard couplings -> squeeze -> 3 channel couplings -> factor out
    half] x (scales - 1) -> 4 checkerboard couplings -> standard normal.

Each coupling is ``y_b = x_b exp(s(x_a)) + t(x_a)`` (log|det| = sum s) with a bounded scale
``s = w tanh(raw)`` (:class:`~.coupling.TanhScaleShift`); s and t come from a ResNet of
``blocks`` residual blocks with ``features`` channels. Masks alternate so that every pixel is
transformed. The paper normalises with batch norm, whose training-mode output depends on the
whole batch (so eval() and train() would give different densities); we use weight
normalisation inside the ResNets instead and no normalisation between couplings.

Defaults: 3 scales on MNIST (1x28x28, 2x14x14, 4x7x7), 8 residual blocks of 64 features (the
paper used 4-8 blocks of 64 features; it has no MNIST run) and the paper's logit alpha 0.05.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from replication.flows.base import Bijection, Chain, Flow, StandardNormal
from replication.flows.images.coupling import (
    ChannelCoupling,
    CheckerboardCoupling,
    ResNet,
    TanhScaleShift,
)
from replication.flows.images.layers import (
    ImageShape,
    LogitTransform,
    Squeeze,
    check_image_shape,
    squeezed,
)
from replication.flows.images.multiscale import MultiScale
from replication.flows.registry import DataShape, register
from replication.typed import ConfigError, LogitAlpha, NonNegativeInt, PositiveInt


@dataclass(frozen=True)
class RealNVPImageOptions:
    scales: PositiveInt = 3
    checkerboard: NonNegativeInt = 3  # checkerboard couplings per non-final scale
    channel: NonNegativeInt = 3  # channel couplings per non-final scale, after the squeeze
    final_checkerboard: PositiveInt = 4  # checkerboard couplings of the last scale
    features: PositiveInt = 64
    blocks: NonNegativeInt = 8
    logit_alpha: LogitAlpha = 0.05


def _conditioner(options: RealNVPImageOptions) -> Callable[[int, int], nn.Module]:
    def make(channels_in: int, channels_out: int) -> nn.Module:
        return ResNet(channels_in, channels_out, options.features, options.blocks)

    return make


def _checkerboards(shape: ImageShape, count: int, options: RealNVPImageOptions) -> list[Bijection]:
    make = _conditioner(options)
    return [
        CheckerboardCoupling(shape, parity % 2, TanhScaleShift(shape[0]), make)
        for parity in range(count)
    ]


def _channels(channels: int, count: int, options: RealNVPImageOptions) -> list[Bijection]:
    make = _conditioner(options)
    changed = (channels - channels // 2, channels // 2)
    return [
        ChannelCoupling(channels, parity % 2, TanhScaleShift(changed[parity % 2]), make)
        for parity in range(count)
    ]


def _check(options: RealNVPImageOptions) -> None:
    counts = (options.scales, options.final_checkerboard, options.features, options.blocks + 1)
    if min(counts) < 1 or min(options.checkerboard, options.channel, options.blocks) < 0:
        raise ConfigError(f"RealNVP sizes must be positive, got {options}")


# The tiny model the unit tests build.
TINY = {
    "scales": 2, "checkerboard": 2, "channel": 2, "final_checkerboard": 2, "features": 4,
    "blocks": 1,
}  # fmt: skip


@register("realnvp", "image", RealNVPImageOptions, tiny=TINY)
def build_realnvp_image(data_shape: DataShape, options: RealNVPImageOptions) -> Flow:
    _check(options)
    shape = check_image_shape(tuple(data_shape), options.scales - 1)
    levels, shapes = [], []
    for _ in range(options.scales - 1):
        after = squeezed(shape)
        steps = _checkerboards(shape, options.checkerboard, options)
        steps += [Squeeze(), *_channels(after[0], options.channel, options)]
        levels.append(Chain(*steps))
        shapes.append(after)
        shape = (after[0] // 2, after[1], after[2])
    levels.append(Chain(*_checkerboards(shape, options.final_checkerboard, options)))
    shapes.append(shape)
    multiscale = MultiScale(levels, shapes)
    transform = Chain(LogitTransform(options.logit_alpha), multiscale)
    return Flow(transform, StandardNormal((multiscale.latent_dim,)))
