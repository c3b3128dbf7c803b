"""Shape-handling bijections shared by the image flows: preprocessing, squeezing, flattening.

- :class:`LogitTransform` maps the dequantized image from [0, 1]^D to R^D (Dinh et al. 2017,
  Sec. 4.1), with its exact log-determinant, so a flow's ``log_prob`` stays the density of the
  image on [0, 1]^D and bits/dim follow from it directly.
- :class:`Squeeze` trades space for channels, ``[C, H, W] -> [4C, H/2, W/2]`` (Dinh et al. 2017).
- :class:`Flatten` and :class:`OnFlattened` connect image-shaped and vector-shaped parts.

All of them except the logit are permutations or reshapes: log|det| = 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

from replication.flows.base import Bijection, Penalty
from replication.typed import ConfigError

ImageShape = tuple[int, int, int]


def _sum_event(values: Tensor) -> Tensor:
    return values.reshape(values.shape[0], -1).sum(1)


class LogitTransform(Bijection):
    """``y = logit(s)``, ``s = alpha + (1 - 2 alpha) x``, for x in [0, 1]: element-wise, so

        log|det dy/dx| = sum_i [log(1 - 2 alpha) - log s_i - log(1 - s_i)].

    ``alpha`` keeps s away from 0 and 1, where the logit is infinite (FFJORD uses 1e-6, RNODE
    1e-5, RealNVP 0.05). The inverse is ``x = (sigmoid(y) - alpha) / (1 - 2 alpha)``.
    """

    def __init__(self, alpha: float) -> None:
        super().__init__()
        if not 0 < alpha < 0.5:
            raise ConfigError(f"logit_alpha must lie in (0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.alpha + (1 - 2 * self.alpha) * x
        log_s, log_complement = torch.log(s), torch.log1p(-s)
        logdet = math.log1p(-2 * self.alpha) - log_s - log_complement
        return log_s - log_complement, _sum_event(logdet)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # log s = logsigmoid(y) and log(1 - s) = logsigmoid(-y), stable for any y.
        log_jacobian = functional.logsigmoid(y) + functional.logsigmoid(-y)
        x = (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)
        return x, _sum_event(log_jacobian - math.log1p(-2 * self.alpha))


class Squeeze(Bijection):
    """``[B, C, H, W] -> [B, 4C, H/2, W/2]``: each 2x2 block of channel c becomes channels
    4c .. 4c + 3 (in row-major order within the block). A permutation: log|det| = 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return y.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = y.shape
        x = y.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c // 4, 2 * h, 2 * w), y.new_zeros(b)


def squeezed(shape: ImageShape) -> ImageShape:
    c, h, w = shape
    if h % 2 or w % 2:
        raise ConfigError(
            f"cannot squeeze an image of shape {shape}: height and width must be even"
        )
    return (4 * c, h // 2, w // 2)


class Flatten(Bijection):
    """``[B, C, H, W] -> [B, C H W]`` (row-major), and back."""

    def __init__(self, shape: ImageShape) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y.reshape(y.shape[0], *self.shape), y.new_zeros(y.shape[0])


class OnFlattened(Bijection):
    """A bijection of flat vectors ``[B, D]`` (e.g. a continuous block) applied to images
    ``[B, C, H, W]`` by flattening before and reshaping after; penalties pass through."""

    def __init__(self, inner: Bijection) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, logdet = self.inner(x.reshape(x.shape[0], -1))
        return y.reshape(x.shape), logdet

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x, logdet = self.inner.inverse(y.reshape(y.shape[0], -1))
        return x.reshape(y.shape), logdet

    def forward_with_penalty(self, x: Tensor) -> tuple[Tensor, Tensor, Penalty]:
        y, logdet, penalty = self.inner.forward_with_penalty(x.reshape(x.shape[0], -1))
        return y.reshape(x.shape), logdet, penalty


def check_image_shape(shape: tuple[int, ...], halvings: int) -> ImageShape:
    """``shape`` as (C, H, W), checking H and W can be halved ``halvings`` times."""
    if len(shape) != 3:
        raise ConfigError(f"image flows need data of shape (C, H, W), got {shape}")
    c, h, w = shape
    step = 2**halvings
    if min(c, h, w) < 1 or h % step or w % step:
        raise ConfigError(
            f"an image of shape {shape} cannot be squeezed {halvings} times: height and width "
            f"must be multiples of {step} (fewer scales, or another image_size)"
        )
    return (c, h, w)
