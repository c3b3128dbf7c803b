"""Flow matching (``fm``): a CNF trained without solving its ODE, scored by exact likelihood.

Lipman et al. (2023, "Flow Matching for Generative Modeling") train the vector field of a CNF
by regression onto the velocity of a fixed probability path between the base density and the
data; Tong et al. (2023) call the version with independently drawn pairs I-CFM. We use the
optimal-transport (straight-line) path with ``sigma_min``: in this suite's direction of time
(data at s = 0, the standard normal base at s = 1, as every ContinuousFlow here integrates),

    z_s = (1 - s) x + (sigma_min + (1 - sigma_min) s) e,    e ~ N(0, I),  s ~ U(0, 1),
    loss = E || f(s, z_s) - ((1 - sigma_min) e - x) ||^2      (summed over dimensions),

the conditional velocity dz_s/ds of Lipman et al.'s OT path run backwards. With
``sigma_min = 0`` (our default) the path ends exactly at the base density and starts exactly at
the data. Training never integrates: an iteration is one evaluation of the field on a batch, so
its NFE is 0. Sampling and the log-likelihood go through the same
:class:`~replication.flows.continuous.ContinuousFlow` as FFJORD: dopri5 at 1e-5 with FFJORD's
step control, exact trace on the toy data, Hutchinson on images (as FFJORD evaluates), so test
NLL, bits/dim and test NFE are measured exactly as for the other methods.

- vector data: FFJORD's concat-squash MLP (2-64-64-64-2, tanh) as the field, T = 1.
- images: one ODE block on the whole logit-transformed image with FFJORD's convolutional field
  (3x3 convolutions with a time channel, softplus); RealNVP's logit alpha 0.05 keeps the logit
  image bounded (|y| <= 2.9), so the straight paths from N(0, I) stay short.

Pairs are drawn independently (no minibatch OT coupling, Tong et al.'s OT-CFM): in 2D it would
straighten the paths and lower the evaluation NFE, but it needs an assignment solver per batch
(a dependency this suite does not have); not measured here. A few lines of our own instead of
torchcfm or Meta's flow_matching: the objective is five lines, and the likelihood must run
through this suite's solver and trace machinery anyway, so a library would add a dependency
and no code we could drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
from torch import Tensor

from replication.flows.augmented import PROBES, EndTime, ExactTrace, Hutchinson, TraceEstimator
from replication.flows.base import Bijection, Chain, Flow, StandardNormal
from replication.flows.continuous import ContinuousFlow, Integration
from replication.flows.dynamics import ACTIVATIONS, ConcatSquashMLP
from replication.flows.images.layers import Flatten, LogitTransform, check_image_shape
from replication.flows.images.odenvp import ConcatConvDynamics
from replication.flows.ode import NFECounter, SolverOptions
from replication.flows.registry import DataShape, register
from replication.typed import Bounds, ConfigError, LogitAlpha, PositiveInt

__all__ = ["ConditionalFlowMatching", "FMImageOptions", "FMOptions"]

# sigma_min: the path's width at the data end, in [0, 1) (1 would erase the data).
SigmaMin = Annotated[float, Bounds(low=0, high=1, high_open=True)]


class TimedConcatSquashMLP(ConcatSquashMLP):
    """FFJORD's concat-squash field, also evaluated at a different time for every sample."""

    def at_times(self, t: Tensor, z: Tensor) -> Tensor:
        """``f(t_b, z_b)`` for ``t`` of shape ``[B]``: each layer ``(h W^T) * g_b + beta_b``,
        the gate unfolded from the weight (it differs per sample)."""
        t = t.reshape(-1, 1).to(z.dtype)
        gates = torch.sigmoid(torch.addcmul(self.gate_bias, self.gate_weight, t))
        shifts = torch.addcmul(self.time_weight * t, self.bias, gates)
        weights = list(self.weights)
        layers = zip(
            weights, gates.split(self.widths, 1), shifts.split(self.widths, 1), strict=True
        )
        h = z
        for index, (weight, gate, shift) in enumerate(layers):
            if index:
                h = self.activation.value(h)
            h = torch.addcmul(shift, h @ weight, gate)
        return h


class TimedConcatConv(ConcatConvDynamics):
    """FFJORD's convolutional field, also evaluated at a different time for every sample."""

    def at_times(self, t: Tensor, z: Tensor) -> Tensor:
        """``f(t_b, z_b)`` for ``t`` of shape ``[B]``: the time channel holds each sample's t."""
        h = z.reshape(z.shape[0], *self.shape)
        time = t.to(h.dtype).reshape(-1, 1, 1, 1).expand(h.shape[0], 1, *self.shape[1:])
        for index, conv in enumerate(self.convs):
            if index:
                h = self.activation.value(h)
            h = conv(torch.cat([time, h], dim=1))
        return h.reshape(z.shape)


@dataclass(frozen=True)
class ConditionalFlowMatching:
    """The flow-matching objective above, for a flow whose transform is one ODE block, possibly
    after parameter-free preprocessing (images: logit, flatten): ``Chain(*before, block)``.

    Stats: ``loss`` (the regression error, not an NLL) and ``nfe_forward`` 0 (no solve)."""

    sigma_min: float = 0.0
    name: str = "conditional flow matching (OT path)"

    def __call__(self, flow: Flow, x: Tensor) -> tuple[Tensor, dict[str, Tensor | int]]:
        block, data = _block_and_input(flow, x)
        noise = torch.randn_like(data)
        s = torch.rand(data.shape[0], 1, dtype=data.dtype, device=data.device)
        z = (1 - s) * data + (self.sigma_min + (1 - self.sigma_min) * s) * noise
        target = (1 - self.sigma_min) * noise - data
        # The field the ODE integrates is T f(T s, z) (see .augmented); T is fixed at 1 here.
        end = block.end_time()
        velocity = end * block.dynamics.at_times(end * s.squeeze(1), z)
        loss = (velocity - target).square().sum(1).mean()
        return loss, {"loss": loss.detach(), "nfe_forward": 0}


def _block_and_input(flow: Flow, x: Tensor) -> tuple[ContinuousFlow, Tensor]:
    """The flow's ODE block and ``x`` carried to its input (the logit and flattening of images:
    steps without parameters, so no gradient flows through them)."""
    steps = list(flow.transform.steps) if isinstance(flow.transform, Chain) else [flow.transform]
    *before, last = steps
    with torch.no_grad():
        for step in before:
            x, _ = step(x)
    if not isinstance(last, ContinuousFlow):
        raise TypeError(f"flow matching trains one ODE block, got {type(last).__name__}")
    return last, x


def _accurate() -> SolverOptions:
    return SolverOptions("dopri5", atol=1e-5, rtol=1e-5)


@dataclass(frozen=True)
class FMOptions:
    """Flow matching on vector data: FFJORD's toy field (concat-squash 64-64-64, tanh) with
    T = 1, scored with dopri5 at 1e-5 and the exact trace, as FFJORD's toy runs are."""

    hidden: tuple[PositiveInt, ...] = (64, 64, 64)
    activation: Literal["tanh", "softplus"] = "tanh"
    sigma_min: SigmaMin = 0.0
    eval_solver: SolverOptions = field(default_factory=_accurate)
    eval_divergence: Literal["exact", "hutchinson"] = "exact"
    probe: Literal["gaussian", "rademacher"] = "gaussian"
    max_nfe: PositiveInt = 10_000


@dataclass(frozen=True)
class FMImageOptions(FMOptions):
    """Flow matching on images: one block with FFJORD's convolutional field (3x3 convs with a
    time channel, softplus) on the logit image (alpha 0.05, RealNVP's), Rademacher Hutchinson
    trace at evaluation, as FFJORD evaluates its image models."""

    activation: Literal["tanh", "softplus"] = "softplus"
    eval_divergence: Literal["exact", "hutchinson"] = "hutchinson"
    probe: Literal["gaussian", "rademacher"] = "rademacher"
    logit_alpha: LogitAlpha = 0.05


def _ode_block(dynamics: TimedConcatSquashMLP | TimedConcatConv, options: FMOptions) -> Bijection:
    """The ODE block, solved with the evaluation solver in both phases (training never solves)."""
    if not options.eval_solver.is_ffjords_controller():
        raise ConfigError(
            "model.eval_solver must control its steps as FFJORD's code did "
            f"({SolverOptions.FFJORDS_CONTROL}): test NFE is compared with the papers"
        )
    divergence: TraceEstimator = (
        ExactTrace() if options.eval_divergence == "exact" else Hutchinson(PROBES[options.probe])
    )
    phase = Integration(options.eval_solver, divergence)
    return ContinuousFlow(
        dynamics, EndTime(1.0, learn=False), train=phase, evaluate=phase, counter=NFECounter(),
        max_nfe=options.max_nfe,
    )  # fmt: skip


# Tiny test models solve at 1e-8, so solver error stays far below the tests' tolerances.
_TIGHT = {"method": "dopri5", "atol": 1e-8, "rtol": 1e-8}


@register("fm", "vector", FMOptions, tiny={"hidden": (8, 8), "eval_solver": _TIGHT},
          check_iterations=3000)  # fmt: skip
def build_fm(data_shape: DataShape, options: FMOptions) -> Flow:
    (dim,) = data_shape
    field = TimedConcatSquashMLP(dim, options.hidden, ACTIVATIONS[options.activation])
    objective = ConditionalFlowMatching(options.sigma_min)
    return Flow(_ode_block(field, options), StandardNormal((dim,)), objective=objective)


@register("fm", "image", FMImageOptions, tiny={"hidden": (4, 4), "eval_solver": _TIGHT,
          "eval_divergence": "exact"})  # fmt: skip
def build_fm_image(data_shape: DataShape, options: FMImageOptions) -> Flow:
    shape = check_image_shape(tuple(data_shape), 0)
    field = TimedConcatConv(shape, options.hidden, options.activation)
    transform = Chain(
        LogitTransform(options.logit_alpha), Flatten(shape), _ode_block(field, options)
    )
    objective = ConditionalFlowMatching(options.sigma_min)
    return Flow(transform, StandardNormal((math.prod(shape),)), objective=objective)
