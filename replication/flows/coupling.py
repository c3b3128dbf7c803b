"""Coupling layers (Dinh et al. 2014, 2017): split x, transform one part conditioned on the other.

With x split into a kept part x_a and a changed part x_b, a coupling layer computes

    y_a = x_a,    y_b = g(x_b; theta(x_a)),

where theta is any network (the *conditioner*) and g is invertible in x_b for fixed theta (the
*element-wise transformer*). The Jacobian is triangular, so log|det| = sum log|dg/dx_b|.

NICE and RealNVP are the same layer with two transformers (STYLE: variants are constructor
arguments): :class:`Shift` (additive, volume-preserving) and :class:`SigmoidScaleShift` (affine).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from itertools import pairwise

import torch
from torch import Tensor, nn

from replication.flows.base import Bijection


class Transformer(nn.Module, ABC):
    """An element-wise invertible map ``g(x; theta)`` with ``params_per_dim`` parameters."""

    params_per_dim: int

    @abstractmethod
    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(g(x), log|dg/dx|)`` element-wise; ``params`` has shape ``[P, *x.shape]``."""

    @abstractmethod
    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(g^-1(y), log|dg^-1/dy|)`` element-wise."""


class Shift(Transformer):
    """NICE's additive coupling: g(x) = x + t, log|dg/dx| = 0."""

    params_per_dim = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return x + params[0], torch.zeros_like(x)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return y - params[0], torch.zeros_like(y)


class SigmoidScaleShift(Transformer):
    """Affine coupling with a bounded scale: g(x) = sigmoid(s + 2) x + t.

    The sigmoid keeps the scale in (0, 1) and starts it near 0.88 for s near 0, which is the
    numerically stable choice of Glow and of FFJORD's discrete baselines (an unbounded exp(s)
    can blow up early in training).
    """

    params_per_dim = 2

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = nn.functional.logsigmoid(params[0] + 2.0)
        return x * torch.exp(log_scale) + params[1], log_scale

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = nn.functional.logsigmoid(params[0] + 2.0)
        return (y - params[1]) * torch.exp(-log_scale), -log_scale


class SoftClampScaleShift(Transformer):
    """RealNVP's affine coupling with a bounded log-scale:

        g(x) = exp(s') x + t,    s' = c tanh(s / c),

    which follows s near 0 and never leaves (-c, c), so one layer can expand or contract by at
    most e^c (RealNVP bounds its log-scale with a tanh too, Dinh et al. 2017, Sec. 4.1). Unlike
    sigmoid(s + 2), whose scale stays below 1, a layer can expand as well as contract.
    """

    params_per_dim = 2

    def __init__(self, bound: float = 2.0) -> None:
        super().__init__()
        self.bound = bound

    def _log_scale(self, raw: Tensor) -> Tensor:
        return self.bound * torch.tanh(raw / self.bound)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self._log_scale(params[0])
        return x * torch.exp(log_scale) + params[1], log_scale

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self._log_scale(params[0])
        return (y - params[1]) * torch.exp(-log_scale), -log_scale


def mlp(sizes: tuple[int, ...], zero_last: bool = False) -> nn.Sequential:
    """A ReLU multi-layer perceptron through ``sizes``; optionally the last layer starts at zero
    so that a coupling layer starts as the identity (Glow's initialisation)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if zero_last:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class VectorCoupling(Bijection):
    """A coupling layer on flat vectors ``[batch, D]``: features ``changed`` are transformed,
    conditioned on features ``kept`` through an MLP."""

    def __init__(
        self,
        kept: list[int],
        changed: list[int],
        transformer: Transformer,
        hidden: tuple[int, ...],
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("kept", torch.tensor(kept, dtype=torch.long))
        self.register_buffer("changed", torch.tensor(changed, dtype=torch.long))
        self.transformer = transformer
        out = transformer.params_per_dim * len(changed)
        self.conditioner = mlp((len(kept), *hidden, out), zero_last=zero_init)

    def _params(self, x: Tensor) -> Tensor:
        params = self.conditioner(x[:, self.kept])
        # [batch, P * n_changed] -> [P, batch, n_changed]
        return params.view(x.shape[0], self.transformer.params_per_dim, -1).transpose(0, 1)

    def _couple(self, x: Tensor, direction: str) -> tuple[Tensor, Tensor]:
        step = getattr(self.transformer, direction)
        changed, log_jac = step(x[:, self.changed], self._params(x))
        y = x.index_copy(1, self.changed, changed)
        return y, log_jac.sum(dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._couple(x, "forward")

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # The kept features are unchanged, so the conditioner sees the same input both ways.
        return self._couple(y, "inverse")


def alternating_halves(dim: int, layer: int) -> tuple[list[int], list[int]]:
    """(kept, changed) feature indices for coupling layer ``layer``: the halves swap roles
    from one layer to the next so every feature is transformed."""
    first, second = list(range(dim // 2)), list(range(dim // 2, dim))
    return (first, second) if layer % 2 == 0 else (second, first)
