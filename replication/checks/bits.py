"""Bits per dimension of densities known in closed form, through the real evaluation path.

Images of 8-bit pixels k are dequantized to x = (k + u) / 256 on [0, 1]^D and scored as

    bpd = (-log p(x) + D ln 256) / (D ln 2).

- A density uniform on [0, 1]^D has log p = 0: exactly 8 bits/dim.
- The logit transform y = logit(a + (1 - 2a) x) followed by a standard logistic density has
  log p(x) = D log(1 - 2a) for every x in [0, 1]^D (the logistic density s(1 - s) cancels the
  Jacobian 1 / (s (1 - s)) of the logit), so bpd = 8 - log2(1 - 2a): the preprocessing's
  Jacobian is counted, the most common bits/dim bug in ports (docs/sources.md).
- NICE's published 1980.50 nats on MNIST (log-likelihood of [0, 1]-scaled data) is 4.356 bpd.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from replication.checks.records import Check, close
from replication.datasets.mnist import dequantize
from replication.evaluate import bits_per_dim, score
from replication.flows.base import BaseDistribution, Chain, Flow, StandardLogistic
from replication.flows.images.layers import LogitTransform

SHAPE = (1, 28, 28)
DIMS = math.prod(SHAPE)
ALPHAS = (1e-6, 1e-5, 0.05)  # FFJORD's, RNODE's and RealNVP's logit alpha
EXACT = 1e-9  # float64 arithmetic over 784 dimensions


class UniformUnitCube(BaseDistribution):
    """The uniform density on [0, 1]^D: log p = 0 inside, -inf outside."""

    def log_prob(self, z: Tensor) -> Tensor:
        inside = ((z >= 0) & (z <= 1)).flatten(1).all(1)
        return torch.where(inside, 0.0, -math.inf).to(z.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand((n, *self.event_shape), generator=generator, dtype=self._anchor.dtype)


def _dequantized_images(count: int = 256) -> list[Tensor]:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (count, *SHAPE), generator=generator, dtype=torch.uint8)
    return [dequantize(pixels, torch.rand(pixels.shape, generator=generator)).double()]


def _bpd(flow: Flow) -> float:
    result = score(flow.double().eval(), _dequantized_images(), torch.device("cpu"))
    return bits_per_dim(result.nll, DIMS)


def bits_per_dim_checks() -> list[Check]:
    """Uniform density, logit + logistic for each reference alpha, NICE's conversion."""
    checks = [
        close("bits_per_dim/uniform", "uniform density on [0,1]^D: exactly 8 bits/dim", 8.0,
              _bpd(Flow(Chain(), UniformUnitCube(SHAPE))), EXACT),
    ]  # fmt: skip
    for alpha in ALPHAS:
        flow = Flow(Chain(LogitTransform(alpha)), StandardLogistic(SHAPE))
        checks.append(close(
            f"bits_per_dim/logit_logistic/alpha={alpha:g}",
            "logit transform + standard logistic, identity flow: 8 - log2(1 - 2 alpha)",
            8.0 - math.log2(1 - 2 * alpha), _bpd(flow), EXACT,
        ))  # fmt: skip
    checks.append(close(
        "bits_per_dim/nice_conversion", "NICE's MNIST log-likelihood 1980.50 nats = 4.356 "
        "bits/dim (docs/sources.md)", 4.356, bits_per_dim(-1980.50, DIMS), 5e-4,
    ))  # fmt: skip
    return checks
