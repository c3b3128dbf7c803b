"""Glow on images (Kingma & Dhariwal 2018): levels of flow steps with squeezes and splits.

    x -> logit -> [squeeze -> K x (actnorm -> 1x1 conv -> affine coupling) -> split] x (L - 1)
    -> squeeze -> K steps -> prior.

A step: actnorm with data-dependent initialisation (log|det| = HW sum log|s|), an invertible
1x1 convolution in LU form (HW sum log|s|), and a channel affine coupling with scale
sigmoid(h + 2) (Glow's code) from :class:`~.coupling.GlowNet`, whose last convolution starts at
zero. A level squeezes only when its height and width are even: on 28x28 MNIST the third level
works at 4x7x7 without squeezing, as FFJORD's third scale does (Glow's own code pads MNIST to
32x32 instead, which changes D).

``prior``:

- ``standard``: N(0, I) on the whole latent.
- ``learned``: a diagonal Gaussian with learned mean and scale per latent dimension
  (:class:`~replication.flows.base.DiagonalNormal`; Glow's learned top prior is this, a
  constant per position).
- ``conditional`` (default, Glow's): additionally, at each split the factored-out half z_b
  gets the conditional prior N(mu(z_a), sigma(z_a)^2) from a zero-initialised 3x3 convolution
  of the kept half z_a, written as the bijection (z_b - mu) / sigma
  (:class:`~.coupling.GaussianStandardize`) before factoring out.

Defaults: Glow's CIFAR-10 model (L = 3, K = 32, width 512); Glow reports no MNIST setup of its
own. Glow uses no logit (it centres x - 1/2); we start every image flow with the logit and
take RealNVP's alpha 0.05, the closest of the reference values to a linear map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from replication.flows.base import BaseDistribution, Chain, DiagonalNormal, Flow, StandardNormal
from replication.flows.coupling import SigmoidScaleShift
from replication.flows.images.coupling import (
    ChannelCoupling,
    GaussianStandardize,
    GlowNet,
    zero_conv,
)
from replication.flows.images.layers import LogitTransform, Squeeze, check_image_shape, squeezed
from replication.flows.images.multiscale import MultiScale
from replication.flows.linear import ActNorm, InvertibleLinear
from replication.flows.registry import DataShape, register
from replication.typed import ConfigError, LogitAlpha, PositiveInt


@dataclass(frozen=True)
class GlowImageOptions:
    levels: PositiveInt = 3
    steps: PositiveInt = 32  # K flow steps per level
    width: PositiveInt = 512  # channels of the coupling networks' hidden layers
    prior: Literal["standard", "learned", "conditional"] = "conditional"
    logit_alpha: LogitAlpha = 0.05


def _coupling_net(width: int) -> Callable[[int, int], nn.Module]:
    def make(channels_in: int, channels_out: int) -> nn.Module:
        return GlowNet(channels_in, channels_out, width)

    return make


def _step(channels: int, width: int) -> Chain:
    coupling = ChannelCoupling(channels, 0, SigmoidScaleShift(), _coupling_net(width))
    return Chain(ActNorm(channels), InvertibleLinear(channels), coupling)


def _split_prior(channels: int) -> ChannelCoupling:
    """Glow's conditional prior of the factored-out half given the kept half."""
    return ChannelCoupling(channels, 0, GaussianStandardize(), zero_conv)


def _base(prior: str, dim: int) -> BaseDistribution:
    return StandardNormal((dim,)) if prior == "standard" else DiagonalNormal((dim,))


@register("glow", "image", GlowImageOptions, tiny={"levels": 2, "steps": 2, "width": 4})
def build_glow_image(data_shape: DataShape, options: GlowImageOptions) -> Flow:
    if min(options.levels, options.steps, options.width) < 1:
        raise ConfigError(f"Glow's levels, steps and width must be positive, got {options}")
    shape = check_image_shape(tuple(data_shape), 0)
    levels, shapes = [], []
    for index in range(options.levels):
        squeeze = shape[1] % 2 == 0 and shape[2] % 2 == 0
        steps = [Squeeze()] if squeeze else []
        shape = squeezed(shape) if squeeze else shape
        if shape[0] < 2:
            raise ConfigError(f"Glow's couplings need at least 2 channels, got shape {shape}")
        steps += [_step(shape[0], options.width) for _ in range(options.steps)]
        last = index == options.levels - 1
        if not last and options.prior == "conditional":
            steps.append(_split_prior(shape[0]))
        levels.append(Chain(*steps))
        shapes.append(shape)
        if not last:
            shape = (shape[0] // 2, shape[1], shape[2])
    multiscale = MultiScale(levels, shapes)
    transform = Chain(LogitTransform(options.logit_alpha), multiscale)
    return Flow(transform, _base(options.prior, math.prod(data_shape)))
