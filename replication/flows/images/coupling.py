"""Coupling layers on images (Dinh et al. 2017, Sec. 3.4; Kingma & Dhariwal 2018, Sec. 3.3).

A coupling layer keeps part x_a of the image and transforms the rest element-wise,
``y_b = g(x_b; theta(x_a))`` (see :mod:`replication.flows.coupling`); two ways to split:

- :class:`CheckerboardCoupling`: x_a = the pixels where (i + j + parity) is even, all channels;
  the conditioner sees the masked image and the mask, and predicts parameters everywhere, of
  which only the changed pixels' are used.
- :class:`ChannelCoupling`: x_a = the first (parity 0) or second half of the channels; the
  conditioner sees only x_a.

Conditioners: RealNVP's :class:`ResNet` (weight-normalised residual blocks of 3x3 convolutions)
and Glow's :class:`GlowNet` (3x3 conv, actnorm, ReLU, 1x1 conv, actnorm, ReLU, zero-initialised
3x3 conv). Their last convolution starts at zero, so each coupling starts as the identity map
for :class:`~replication.flows.coupling.SigmoidScaleShift`-like transformers up to a constant
scale, and exactly for :class:`TanhScaleShift` and :class:`GaussianStandardize`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from replication.flows.base import Bijection
from replication.flows.coupling import Transformer
from replication.flows.linear import ActNorm

Conditioner = Callable[[int, int], nn.Module]  # (in channels, out channels) -> network


class TanhScaleShift(Transformer):
    """RealNVP's affine transformer with a bounded log-scale (Dinh et al. 2017, Sec. 4.1):

        g(x) = exp(s) x + t,   s = w_c tanh(raw),

    with a learned per-channel factor ``w_c`` (started at 1): |s| <= |w_c| whatever the
    network outputs, which keeps early training stable."""

    params_per_dim = 2

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.factor = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self.factor * torch.tanh(params[0])
        return x * torch.exp(log_scale) + params[1], log_scale

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self.factor * torch.tanh(params[0])
        return (y - params[1]) * torch.exp(-log_scale), -log_scale


class GaussianStandardize(Transformer):
    """``g(x) = (x - mu) exp(-log_sigma)``: with a standard normal on g(x), x ~ N(mu, sigma^2).

    Used as a coupling, it is Glow's conditional prior on the factored-out half of a split,
    p(z_b | z_a) = N(mu(z_a), sigma(z_a)^2), written as a bijection to a standard normal."""

    params_per_dim = 2

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return (x - params[0]) * torch.exp(-params[1]), -params[1]

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return y * torch.exp(params[1]) + params[0], params[1]


def zero_conv(channels_in: int, channels_out: int, kernel: int = 3) -> nn.Conv2d:
    conv = nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class _ResidualBlock(nn.Module):
    """``h + W2 relu(W1 relu(h))`` with weight-normalised 3x3 convolutions W1, W2."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.first = weight_norm(nn.Conv2d(features, features, 3, padding=1))
        self.second = weight_norm(nn.Conv2d(features, features, 3, padding=1))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.second(torch.relu(self.first(torch.relu(h))))


class ResNet(nn.Module):
    """RealNVP's conditioner: a 3x3 entry convolution to ``features`` channels, ``blocks``
    residual blocks, ReLU and a zero-initialised 3x3 exit convolution. Weight normalisation
    (Salimans & Kingma 2016) replaces the paper's batch normalisation, which would make the
    flow's density depend on the batch in training mode."""

    def __init__(self, channels_in: int, channels_out: int, features: int, blocks: int) -> None:
        super().__init__()
        self.entry = weight_norm(nn.Conv2d(channels_in, features, 3, padding=1))
        self.blocks = nn.Sequential(*(_ResidualBlock(features) for _ in range(blocks)))
        self.exit = zero_conv(features, channels_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.exit(torch.relu(self.blocks(self.entry(x))))


class _ActNormLayer(nn.Module):
    """Glow's actnorm used inside a network: only the normalised output, no log-determinant."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = ActNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)[0]


class GlowNet(nn.Module):
    """Glow's coupling network (Kingma & Dhariwal 2018, Sec. 3.3 and their code's defaults):
    3x3 conv -> actnorm -> ReLU -> 1x1 conv -> actnorm -> ReLU -> zero-initialised 3x3 conv.
    Convolutions followed by actnorm carry no bias (actnorm has one)."""

    def __init__(self, channels_in: int, channels_out: int, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels_in, width, 3, padding=1, bias=False),
            _ActNormLayer(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 1, bias=False),
            _ActNormLayer(width),
            nn.ReLU(),
            zero_conv(width, channels_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _as_params(raw: Tensor, count: int) -> Tensor:
    """``[B, P * C, H, W] -> [P, B, C, H, W]``."""
    b, _, h, w = raw.shape
    return raw.view(b, count, -1, h, w).transpose(0, 1)


class CheckerboardCoupling(Bijection):
    """Transform the pixels where ``(i + j + parity)`` is odd, conditioned on the others."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        parity: int,
        transformer: Transformer,
        conditioner: Conditioner,
    ) -> None:
        super().__init__()
        c, h, w = shape
        rows, cols = torch.arange(h).view(-1, 1), torch.arange(w).view(1, -1)
        self.register_buffer("mask", ((rows + cols + parity) % 2 == 0).view(1, 1, h, w))
        self.transformer = transformer
        self.conditioner = conditioner(c + 1, transformer.params_per_dim * c)

    def _couple(self, x: Tensor, direction: str) -> tuple[Tensor, Tensor]:
        mask = self.mask.to(x.dtype)
        given = torch.cat([x * mask, mask.expand(x.shape[0], -1, -1, -1)], dim=1)
        params = _as_params(self.conditioner(given), self.transformer.params_per_dim)
        # Fill the kept pixels with harmless values first: where() alone would still let a
        # non-finite value there poison the gradients.
        params = torch.where(self.mask, 0.0, params)
        moved, log_jacobian = getattr(self.transformer, direction)(x, params)
        y = torch.where(self.mask, x, moved)
        logdet = torch.where(self.mask, 0.0, log_jacobian)
        return y, logdet.reshape(x.shape[0], -1).sum(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(x, "forward")

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # The kept pixels are unchanged, so the conditioner sees the same input both ways.
        return self._couple(y, "inverse")


class ChannelCoupling(Bijection):
    """Transform one half of the channels conditioned on the other: parity 0 keeps the first
    ``C // 2`` channels, parity 1 the last ``C // 2``."""

    def __init__(
        self, channels: int, parity: int, transformer: Transformer, conditioner: Conditioner
    ) -> None:
        super().__init__()
        kept = channels // 2
        self.sizes = (kept, channels - kept) if parity == 0 else (channels - kept, kept)
        self.parity = parity
        changed = channels - kept
        self.transformer = transformer
        self.conditioner = conditioner(kept, transformer.params_per_dim * changed)

    def _couple(self, x: Tensor, direction: str) -> tuple[Tensor, Tensor]:
        first, second = x.split(self.sizes, dim=1)
        kept, changed = (first, second) if self.parity == 0 else (second, first)
        params = _as_params(self.conditioner(kept), self.transformer.params_per_dim)
        moved, log_jacobian = getattr(self.transformer, direction)(changed, params)
        parts = (kept, moved) if self.parity == 0 else (moved, kept)
        return torch.cat(parts, dim=1), log_jacobian.reshape(x.shape[0], -1).sum(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(x, "forward")

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(y, "inverse")
