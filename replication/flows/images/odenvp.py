"""Continuous flows on images: FFJORD's multi-scale ODE flow ("ODENVP", Grathwohl et al. 2019,
Sec. 5.2) for ``cnf``, ``ffjord`` and ``rnode``.

    x -> logit -> [b CNF blocks -> squeeze -> b CNF blocks -> factor out half] x (scales - 1)
    -> b CNF blocks -> standard normal.

On MNIST with 3 scales and b = 2 the blocks act on 1x28x28, 4x14x14, 2x14x14, 8x7x7 and 4x7x7
tensors, 10 blocks in all. Each block is a :class:`~replication.flows.continuous.ContinuousFlow`
on its flattened state, dz/dt = f(t, z), log|det| = int_0^T tr(df/dz) dt, sharing one NFE
counter. The dynamics:

- ``ffjord``/``rnode``: :class:`ConcatConvDynamics`, 3x3 convolutions C -> 64 -> 64 -> 64 -> C
  with t appended as an extra input channel of every layer and softplus between layers;
  Hutchinson trace (Rademacher probes for FFJORD, Gaussian for RNODE), one probe per solve.
  This gives FFJORD's 800,636 weights exactly (plus one learned end time per block for
  ``ffjord``). RNODE adds lambda_K = lambda_J = 0.01 kinetic and Jacobian penalties, a
  zero-initialised last convolution, a fixed T = 1 and training with rk4 at step 0.25.
  RNODE adds lambda R to the *bits/dim* loss, while the training loop minimises nats per
  image, D ln 2 times bits/dim plus a constant; so every block weighs its integrals by
  lambda D ln 2 (D = C H W of the image), which gives RNODE's objective up to that factor.
  (Adding lambda R to the nats loss would weaken the penalties 543-fold on MNIST, and a
  model trained with a coarse fixed-step solver then learns to exploit the solver error.)
- ``cnf``: Chen et al. (2018) report no MNIST model. We keep the same multi-scale structure and
  use their planar-hypernetwork dynamics
  (:class:`~replication.flows.dynamics.PlanarHyperDynamics`) on each block's flattened state,
  with its closed-form exact trace for training and evaluation (cheap at any D). Its
  hypernetwork emits 2D + 2 numbers per unit, so most of its weights sit in that output layer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from replication.flows.augmented import PROBES, EndTime, ExactTrace, Hutchinson, TraceEstimator
from replication.flows.base import Bijection, Chain, Flow, StandardNormal
from replication.flows.continuous import (
    ContinuousFlow,
    ContinuousOptions,
    Integration,
    NFECounter,
    SolverOptions,
    check_options,
)
from replication.flows.dynamics import ACTIVATIONS, Dynamics, PlanarHyperDynamics
from replication.flows.images.layers import (
    ImageShape,
    LogitTransform,
    OnFlattened,
    Squeeze,
    check_image_shape,
    squeezed,
)
from replication.flows.images.multiscale import MultiScale
from replication.flows.registry import DataShape, register
from replication.typed import (
    ConfigError,
    LogitAlpha,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
)


class ConcatConvDynamics(Dynamics):
    """f(t, z) on flat states ``[B, C H W]`` viewed as images: layers

        h_{l+1} = W_l * [t | a(h_l)] + b_l   (3x3 convolutions, a = activation, none before
                                              the first layer),

    where [t | h] appends a constant channel holding t. ``zero_init_last`` zeroes the last
    convolution, so f = 0 at the start (RNODE)."""

    def __init__(
        self,
        shape: ImageShape,
        hidden: tuple[PositiveInt, ...] = (64, 64, 64),
        activation: str = "softplus",
        zero_init_last: bool = False,
    ) -> None:
        super().__init__(math.prod(shape))
        self.shape = tuple(shape)
        self.activation = ACTIVATIONS[activation]
        sizes = (shape[0], *hidden, shape[0])
        self.convs = nn.ModuleList(
            nn.Conv2d(n_in + 1, n_out, 3, padding=1) for n_in, n_out in itertools.pairwise(sizes)
        )
        if zero_init_last:
            nn.init.zeros_(self.convs[-1].weight)
            nn.init.zeros_(self.convs[-1].bias)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        h = z.reshape(z.shape[0], *self.shape)
        time = t.to(h.dtype).reshape(1, 1, 1, 1).expand(h.shape[0], 1, *self.shape[1:])
        for index, conv in enumerate(self.convs):
            if index:
                h = self.activation.value(h)
            h = conv(torch.cat([time, h], dim=1))
        return h.reshape(z.shape)

    def forward_with_tangents(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """The exact Jacobian, by D vector-Jacobian products per sample (``torch.func``): only
        for small images (tests, exact-trace runs); Hutchinson needs one product."""

        def one(sample: Tensor) -> Tensor:
            return self(t, sample.unsqueeze(0)).squeeze(0)

        jacobian = torch.func.vmap(torch.func.jacrev(one))(z)  # [B, D out, D in]
        return self(t, z), jacobian.permute(2, 0, 1)


@dataclass(frozen=True)
class CNFImageOptions(ContinuousOptions):
    """Chen et al.'s planar-hypernetwork CNF in FFJORD's multi-scale structure (our design;
    the paper has no image model): 64 units and a 32-32 hypernetwork as in the vector ``cnf``,
    exact trace, T = 1 fixed, dopri5 at 1e-5, logit alpha 1e-6 as FFJORD's multi-scale model."""

    scales: PositiveInt = 3
    blocks: PositiveInt = 2  # CNF blocks before and after each squeeze, and at the last scale
    units: PositiveInt = 64
    hidden: tuple[PositiveInt, ...] = (32, 32)
    end_time: PositiveFloat = 1.0
    learn_end_time: bool = False
    logit_alpha: LogitAlpha = 1e-6


@dataclass(frozen=True)
class FFJORDImageOptions(ContinuousOptions):
    """FFJORD's MNIST model (docs/sources.md): 3 scales, 2 blocks per stage, 3x3 convs
    64-64-64 with time channels, softplus, Rademacher Hutchinson trace (also at test, as
    FFJORD evaluates), learned end time from 1.0, dopri5 1e-5, logit alpha 1e-6."""

    scales: PositiveInt = 3
    blocks: PositiveInt = 2
    hidden: tuple[PositiveInt, ...] = (64, 64, 64)
    activation: Literal["tanh", "softplus"] = "softplus"
    end_time: PositiveFloat = 1.0
    divergence: Literal["exact", "hutchinson"] = "hutchinson"
    eval_divergence: Literal["exact", "hutchinson"] = "hutchinson"
    probe: Literal["gaussian", "rademacher"] = "rademacher"
    logit_alpha: LogitAlpha = 1e-6


def _rk4_quarter() -> SolverOptions:
    return SolverOptions("rk4", step_size=0.25)


@dataclass(frozen=True)
class RNODEImageOptions(FFJORDImageOptions):
    """FFJORD + RNODE on MNIST (docs/sources.md): the FFJORD model with lambda_K =
    lambda_J = 0.01, Gaussian probes, fixed T = 1, zero-initialised last layers, logit alpha
    1e-5, training with rk4 at step 0.25 and testing with dopri5 at 1e-5. The weights are
    relative to the bits/dim loss, as RNODE's (see the module docstring)."""

    probe: Literal["gaussian", "rademacher"] = "gaussian"
    learn_end_time: bool = False
    kinetic_weight: NonNegativeFloat = 0.01
    jacobian_weight: NonNegativeFloat = 0.01
    zero_init_last: bool = True
    train_solver: SolverOptions = field(default_factory=_rk4_quarter)
    logit_alpha: LogitAlpha = 1e-5


def _estimator(name: str, probe: str) -> TraceEstimator:
    return ExactTrace() if name == "exact" else Hutchinson(PROBES[probe])


def _check(options: ContinuousOptions, scales: int) -> None:
    if scales < 1:
        raise ConfigError("scales must be at least 1")
    check_options(options)  # blocks, end time, penalty weights, NFE ceiling


def odenvp(
    data_shape: DataShape,
    options: CNFImageOptions | FFJORDImageOptions,
    make_dynamics: Callable[[ImageShape], Dynamics],
) -> Flow:
    """The multi-scale continuous flow with ``make_dynamics(shape)`` in every block."""
    _check(options, options.scales)
    shape = check_image_shape(tuple(data_shape), options.scales - 1)
    counter = NFECounter()
    probe = getattr(options, "probe", "gaussian")
    train = Integration(options.train_solver, _estimator(options.divergence, probe))
    evaluate = Integration(options.eval_solver, _estimator(options.eval_divergence, probe))
    # Penalty weights are per unit of bits/dim; the loss is in nats per image (see above).
    to_nats = math.prod(data_shape) * math.log(2)

    def stage(shape: ImageShape) -> list[Bijection]:
        return [
            OnFlattened(ContinuousFlow(
                make_dynamics(shape), EndTime(options.end_time, options.learn_end_time),
                train=train, evaluate=evaluate, counter=counter,
                kinetic_weight=options.kinetic_weight * to_nats,
                jacobian_weight=options.jacobian_weight * to_nats,
                max_nfe=options.max_nfe,
            ))
            for _ in range(options.blocks)
        ]  # fmt: skip

    levels, shapes = [], []
    for _ in range(options.scales - 1):
        after = squeezed(shape)
        levels.append(Chain(*stage(shape), Squeeze(), *stage(after)))
        shapes.append(after)
        shape = (after[0] // 2, after[1], after[2])
    levels.append(Chain(*stage(shape)))
    shapes.append(shape)
    transform = Chain(LogitTransform(options.logit_alpha), MultiScale(levels, shapes))
    return Flow(transform, StandardNormal((math.prod(data_shape),)))


# Tiny test models: two scales, one block, solved at 1e-7 (FFJORD's with the exact trace).
_TIGHT = {"method": "dopri5", "atol": 1e-7, "rtol": 1e-7}
_ODE = {"scales": 2, "blocks": 1, "train_solver": _TIGHT, "eval_solver": _TIGHT}
_TINY = {**_ODE, "divergence": "exact", "eval_divergence": "exact", "hidden": (4, 4)}


@register("cnf", "image", CNFImageOptions, tiny={**_ODE, "units": 4, "hidden": (4,)})
def build_cnf_image(data_shape: DataShape, options: CNFImageOptions) -> Flow:
    def make(shape: ImageShape) -> Dynamics:
        dim = math.prod(shape)
        return PlanarHyperDynamics(dim, options.units, options.hidden, options.zero_init_last)

    return odenvp(data_shape, options, make)


def _conv_dynamics(options: FFJORDImageOptions) -> Callable[[ImageShape], Dynamics]:
    def make(shape: ImageShape) -> Dynamics:
        return ConcatConvDynamics(shape, options.hidden, options.activation, options.zero_init_last)

    return make


# The same model; RNODE options add penalties.
@register("rnode", "image", RNODEImageOptions, tiny=_TINY)
@register("ffjord", "image", FFJORDImageOptions, tiny=_TINY)
def build_ffjord_image(data_shape: DataShape, options: FFJORDImageOptions) -> Flow:
    return odenvp(data_shape, options, _conv_dynamics(options))
