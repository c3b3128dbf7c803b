"""The multi-scale architecture (Dinh et al. 2017, Sec. 3.6): after each level but the last,
half of the channels are factored out, i.e. passed straight to the latent space, and the next
level works on the other half only.

With levels f_1 .. f_L and the running tensor h_0 = x,

    h_l = f_l(keep(h_{l-1})),    z = [out(f_1(h_0)) | ... | out(f_{L-1}(.)) | h_L]  (flattened),

where keep/out take the first ``C // 2`` channels and the rest. Factoring out is a reshuffle of
coordinates, so log|det| is the sum of the levels' log-determinants. The latent is the
concatenation of every factored-out part and the last level's output, flattened to
``[B, D]``, so the flow's base density is over a vector whatever the architecture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from replication.flows.base import Bijection, Penalty
from replication.flows.images.layers import ImageShape
from replication.typed import ConfigError


class MultiScale(Bijection):
    """Levels ``levels[l]`` with output shapes ``shapes[l]``; half the channels factored out
    after each level but the last. Maps ``[B, C, H, W]`` to the flat latent ``[B, D]``."""

    def __init__(self, levels: Sequence[Bijection], shapes: Sequence[ImageShape]) -> None:
        super().__init__()
        if len(levels) != len(shapes) or not levels:
            raise ValueError("one output shape per level, and at least one level")
        for shape in shapes[:-1]:
            if shape[0] < 2:
                raise ConfigError(f"cannot factor out half of {shape[0]} channel(s) ({shape})")
        self.levels = nn.ModuleList(levels)
        self.shapes = [tuple(shape) for shape in shapes]
        # The factored-out part of each level, then the last level's whole output.
        self.parts = [(c - c // 2, h, w) for c, h, w in self.shapes[:-1]] + [self.shapes[-1]]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, logdet, _ = self._forward(x, with_penalty=False)
        return z, logdet

    def forward_with_penalty(self, x: Tensor) -> tuple[Tensor, Tensor, Penalty]:
        return self._forward(x, with_penalty=True)

    def _forward(self, x: Tensor, with_penalty: bool) -> tuple[Tensor, Tensor, Penalty]:
        total, penalty, outputs = x.new_zeros(x.shape[0]), Penalty.zeros_like(x), []
        h = x
        for index, level in enumerate(self.levels):
            if with_penalty:
                h, logdet, level_penalty = level.forward_with_penalty(h)
                penalty = penalty + level_penalty
            else:
                h, logdet = level(h)
            total = total + logdet
            if index < len(self.levels) - 1:
                kept = h.shape[1] // 2
                outputs.append(h[:, kept:].reshape(h.shape[0], -1))
                h = h[:, :kept]
        outputs.append(h.reshape(h.shape[0], -1))
        return torch.cat(outputs, dim=1), total, penalty

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        sizes = [math.prod(part) for part in self.parts]
        pieces = z.split(sizes, dim=1)
        h = pieces[-1].reshape(z.shape[0], *self.parts[-1])
        total = z.new_zeros(z.shape[0])
        for index in reversed(range(len(self.levels))):
            if index < len(self.levels) - 1:
                out = pieces[index].reshape(z.shape[0], *self.parts[index])
                h = torch.cat([h, out], dim=1)
            h, logdet = self.levels[index].inverse(h)
            total = total + logdet
        return h, total

    @property
    def latent_dim(self) -> int:
        return sum(math.prod(part) for part in self.parts)
