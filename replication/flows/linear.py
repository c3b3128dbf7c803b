"""Element-wise and linear invertible layers: NICE's diagonal scaling, Glow's actnorm and its
invertible linear map in LU parametrisation (Kingma & Dhariwal 2018).

Every layer acts on dimension 1 (features of a vector, channels of an image) and identically
at every spatial position, so a log-determinant per position is multiplied by the number of
positions: for an image of size H x W, log|det| = H W log|det W| for a 1x1 convolution W.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from replication.flows.base import Bijection


def _positions(x: Tensor) -> int:
    """Number of spatial positions sharing one set of per-channel parameters."""
    return math.prod(x.shape[2:])


def _per_channel(values: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``[C]`` parameter to broadcast against ``x`` of shape ``[B, C, *spatial]``."""
    return values.view(1, -1, *([1] * (x.dim() - 2)))


class DiagonalScale(Bijection):
    """NICE's final scaling layer: y = exp(s) * x, log|det| = sum(s), one s per element."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = self.log_scale.sum().expand(x.shape[0])
        return x * torch.exp(self.log_scale), logdet

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        logdet = -self.log_scale.sum().expand(y.shape[0])
        return y * torch.exp(-self.log_scale), logdet


class ActNorm(Bijection):
    """Glow's activation normalisation: y = (x + b) * exp(s) per channel.

    Data-dependent initialisation: the first forward pass in training mode sets b and s so
    that this batch comes out with zero mean and unit variance per channel. The flag is a
    persistent buffer, so a loaded model is never re-initialised.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
        self.bias.copy_(-per_channel.mean(dim=1))
        self.log_scale.copy_(-torch.log(per_channel.std(dim=1) + 1e-6))
        self.initialized.fill_(True)

    def _logdet(self, x: Tensor) -> Tensor:
        return (self.log_scale.sum() * _positions(x)).expand(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialized:
            self._initialize(x)
        y = (x + _per_channel(self.bias, x)) * torch.exp(_per_channel(self.log_scale, x))
        return y, self._logdet(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = y * torch.exp(-_per_channel(self.log_scale, y)) - _per_channel(self.bias, y)
        return x, -self._logdet(y)


class InvertibleLinear(Bijection):
    """Glow's invertible linear map (a 1x1 convolution on images), LU-parametrised:

        W = P L (U + diag(sign * exp(log_s))),

    with P a fixed permutation, L unit lower triangular and U strictly upper triangular, so
    log|det W| = sum(log_s) costs O(C) instead of O(C^3). Only the free entries are parameters
    (C^2 in all), so the parameter count is that of a C x C matrix. Initialised at a random
    rotation.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation, _ = torch.linalg.qr(torch.randn(channels, channels))
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = torch.diagonal(upper)
        below = torch.tril_indices(channels, channels, -1)
        self.register_buffer("permutation", permutation)
        self.register_buffer("sign", torch.sign(diagonal))
        self.register_buffer("below", below, persistent=False)
        self.register_buffer("identity", torch.eye(channels), persistent=False)
        self.lower = nn.Parameter(lower[below[0], below[1]])
        self.upper = nn.Parameter(upper.T[below[0], below[1]])
        self.log_s = nn.Parameter(torch.log(diagonal.abs()))

    def _strict_lower(self, entries: Tensor) -> Tensor:
        matrix = torch.zeros_like(self.identity)
        return matrix.index_put((self.below[0], self.below[1]), entries)

    def weight(self) -> Tensor:
        lower = self._strict_lower(self.lower) + self.identity
        upper = self._strict_lower(self.upper).T + torch.diag(self.sign * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def _logdet(self, x: Tensor) -> Tensor:
        return (self.log_s.sum() * _positions(x)).expand(x.shape[0])

    @staticmethod
    def _apply_matrix(matrix: Tensor, x: Tensor) -> Tensor:
        """``matrix`` applied to dimension 1 of ``x`` at every position (a 1x1 convolution)."""
        if x.dim() == 2:
            return nn.functional.linear(x, matrix)
        return torch.einsum("ij,bj...->bi...", matrix, x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._apply_matrix(self.weight(), x), self._logdet(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._apply_matrix(torch.linalg.inv(self.weight()), y), -self._logdet(y)
