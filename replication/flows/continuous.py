"""Continuous normalizing flows on vector data: CNF, FFJORD and FFJORD + RNODE.

A continuous flow maps x = z(0) to z(T) by ``dz/dt = f(t, z)`` and, by the instantaneous change
of variables (Chen et al. 2018, Thm. 1),

    log p_X(x) = log p_Z(z(T)) + int_0^T tr(df/dz(t)) dt.

The three methods are one block with different constructor arguments:

- ``cnf`` (Chen et al. 2018): planar-unit dynamics from a hypernetwork on t, exact trace.
- ``ffjord`` (Grathwohl et al. 2019): a free-form concat-squash MLP, learned end time.
- ``rnode`` (Finlay et al. 2020): FFJORD plus kinetic-energy and Jacobian-norm penalties.

Evaluations of the dynamics are counted by one :class:`~replication.flows.ode.NFECounter` per
flow, shared by its blocks; :meth:`replication.flows.base.Flow.evaluations` reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from replication.flows.augmented import (
    PROBES,
    AugmentedField,
    DensityField,
    EndTime,
    ExactTrace,
    Hutchinson,
    RegularisedField,
    TraceEstimator,
)
from replication.flows.base import Bijection, Chain, Flow, Penalty, Phase, StandardNormal
from replication.flows.dynamics import ACTIVATIONS, ConcatSquashMLP, Dynamics, PlanarHyperDynamics
from replication.flows.ode import NFECounter, SolveMeter, SolverOptions, integrate
from replication.flows.registry import DataShape, register
from replication.flows.solver_failures import (
    NFELimitExceeded,
    NonFiniteState,
    SolverFailure,
    SolverUnderflow,
)
from replication.typed import ConfigError, NonNegativeFloat, PositiveFloat, PositiveInt

__all__ = [
    "CNFOptions", "ContinuousFlow", "FFJORDOptions", "Integration", "NFECounter",
    "NFELimitExceeded", "NonFiniteState", "RNODEOptions", "SolverFailure", "SolverOptions",
    "SolverUnderflow", "solver_statistics",
]  # fmt: skip


@dataclass(frozen=True)
class Integration:
    """How one phase (training or evaluation) integrates: the solver and the trace estimator."""

    solver: SolverOptions
    divergence: TraceEstimator


class ContinuousFlow(Bijection):
    """One CNF block: ``x = z(0) -> z(T)`` with ``log|det dz(T)/dx| = int_0^T tr(df/dz) dt``.

    Integrates over s in [0, 1] with the field ``T f(T s, z)`` (see :mod:`.augmented`), so a
    learned T never moves the solver grid. ``evaluate`` applies unless the flow is inside
    :meth:`~replication.flows.base.Flow.solving` ``("train")``, as the training step is. With ``kinetic_weight`` or ``jacobian_weight`` positive,
    :meth:`forward_with_penalty` integrates RNODE's two penalties alongside (Finlay et al. 2020)
    and weights them,

        lambda_K int_0^T ||f||^2 / 2D dt + lambda_J int_0^T ||df/dz||_F^2 / D dt,

    per sample; plain :meth:`forward` never does. ``max_nfe`` bounds each solve.
    """

    def __init__(
        self,
        dynamics: Dynamics,
        end_time: EndTime,
        *,
        train: Integration,
        evaluate: Integration,
        counter: NFECounter,
        kinetic_weight: NonNegativeFloat = 0.0,
        jacobian_weight: NonNegativeFloat = 0.0,
        max_nfe: PositiveInt = 10_000,
    ) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.end_time = end_time
        self.phases: dict[Phase, Integration] = {"train": train, "evaluate": evaluate}
        self.phase: Phase = "evaluate"
        self.counter = counter
        self.kinetic_weight = kinetic_weight
        self.jacobian_weight = jacobian_weight
        self.max_nfe = max_nfe
        if train.solver.warm_start:
            # The first step the last training solve accepted (NaN: none yet). A buffer, so
            # checkpoints carry it and a resumed run solves exactly as an uninterrupted one.
            self.register_buffer("first_step", torch.tensor(math.nan))

    def use_phase(self, phase: Phase) -> Phase:
        if phase not in self.phases:
            raise ValueError(f"phase must be one of {sorted(self.phases)}, got {phase!r}")
        previous, self.phase = self.phase, phase
        return previous

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        state = self._solve(DensityField, x, extra=0, times=(0.0, 1.0))
        return state[:, : x.shape[1]], state[:, x.shape[1]]

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Integrate back from s = 1 to 0: the logdet accumulates ``-int tr`` along the way."""
        state = self._solve(DensityField, y, extra=0, times=(1.0, 0.0))
        return state[:, : y.shape[1]], state[:, y.shape[1]]

    def forward_with_penalty(self, x: Tensor) -> tuple[Tensor, Tensor, Penalty]:
        if self.kinetic_weight == 0 and self.jacobian_weight == 0:
            return super().forward_with_penalty(x)
        state = self._solve(RegularisedField, x, extra=2, times=(0.0, 1.0))
        dim = x.shape[1]
        kinetic, jacobian = state[:, dim + 1], state[:, dim + 2]
        weighted = self.kinetic_weight * kinetic + self.jacobian_weight * jacobian
        return state[:, :dim], state[:, dim], Penalty(kinetic, jacobian, weighted)

    def right_hand_side(
        self, field: type[AugmentedField], x: Tensor, extra: int = 0
    ) -> tuple[AugmentedField, Tensor]:
        """The field one solve from ``x`` integrates, and
        its initial packed state ``[x | 0 ...]`` (for the current phase's divergence); the
        benchmark times it on its own."""
        phase = self.phases[self.phase]
        meter = SolveMeter(self.counter, self.max_nfe)
        rhs = field(self.dynamics, self.end_time, phase.divergence.start(x), meter)
        return rhs, torch.cat([x, x.new_zeros(x.shape[0], 1 + extra)], dim=1)

    def _solve(
        self, field: type[AugmentedField], x: Tensor, extra: int, times: tuple[float, float]
    ) -> Tensor:
        """Solve the augmented ODE from ``[x | 0 ...]`` over ``times``; the packed end state."""
        phase = self.phases[self.phase]
        rhs, state = self.right_hand_side(field, x, extra)
        meter = rhs.meter
        warm = self.phase == "train" and phase.solver.warm_start and times[0] < times[1]
        remembered = float(self.first_step) if warm else math.nan  # NaN: estimate it
        first_step = None if math.isnan(remembered) else remembered
        end = integrate(rhs, state, x.new_tensor(times), phase.solver, first_step)
        if warm and meter.largest_accepted is not None:  # a step past the end counts as one to it
            self.first_step.fill_(min(meter.largest_accepted, times[1] - times[0]))
        return end


def solver_statistics(flow: nn.Module) -> dict[str, int]:
    """Where the evaluations of ``flow``'s primal adaptive solves went so far: solves, evaluations
    before the first step, accepted and rejected steps (one counter per flow, shared by its
    blocks). Differences around a step give that step's figures."""
    counters = {id(m.counter): m.counter for m in flow.modules() if isinstance(m, ContinuousFlow)}
    keys = ("solves", "initial", "accepted", "rejected")
    return {key: sum(getattr(c, key) for c in counters.values()) for key in keys}


TraceChoice = Literal["exact", "hutchinson"]


@dataclass(frozen=True)
class ContinuousOptions:
    """Options every continuous method shares (defaults: FFJORD's toy run, see each method).

    Solver tolerance 1e-5 for training and evaluation and the exact trace are FFJORD's toy
    settings (train_toy.py); direct backpropagation instead of FFJORD's adjoint is our choice:
    it is faster for these small models and gives the same gradients to solver tolerance.
    """

    blocks: PositiveInt = 1
    end_time: PositiveFloat = 0.5
    learn_end_time: bool = True
    divergence: TraceChoice = "exact"
    eval_divergence: TraceChoice = "exact"
    probe: Literal["gaussian", "rademacher"] = "gaussian"
    train_solver: SolverOptions = field(default_factory=SolverOptions)
    eval_solver: SolverOptions = field(default_factory=SolverOptions)
    kinetic_weight: NonNegativeFloat = 0.0
    jacobian_weight: NonNegativeFloat = 0.0
    max_nfe: PositiveInt = 10_000
    zero_init_last: bool = False


@dataclass(frozen=True)
class CNFOptions(ContinuousOptions):
    """Chen et al. (2018)'s CNF: ``units`` planar units, hypernetwork widths ``hidden``.

    64 units and a 32-32 hypernetwork follow the toy density example published with the paper
    (torchdiffeq's examples/cnf.py: width 64, hidden 32); the fixed end time 1 is our choice
    (the hypernetwork can scale the field itself).
    """

    units: PositiveInt = 64
    hidden: tuple[PositiveInt, ...] = (32, 32)
    end_time: PositiveFloat = 1.0
    learn_end_time: bool = False


@dataclass(frozen=True)
class FFJORDOptions(ContinuousOptions):
    """FFJORD toy (Grathwohl et al. 2019, train_toy.py): concat-squash 64-64-64, tanh, 1 block,
    end time learned from 0.5, exact trace, dopri5."""

    hidden: tuple[PositiveInt, ...] = (64, 64, 64)
    activation: Literal["tanh", "softplus"] = "tanh"


@dataclass(frozen=True)
class RNODEOptions(FFJORDOptions):
    """FFJORD + RNODE (Finlay et al. 2020): lambda_K = lambda_J = 0.01 and a zero-initialised
    last layer, as in their runs. The end time is fixed at T = 1 as RNODE does: with both
    penalties a learned T only runs away (stretching time lowers both integrals, ~1/T)."""

    kinetic_weight: NonNegativeFloat = 0.01
    jacobian_weight: NonNegativeFloat = 0.01
    zero_init_last: bool = True
    end_time: PositiveFloat = 1.0
    learn_end_time: bool = False


def _estimator(name: TraceChoice, options: ContinuousOptions) -> TraceEstimator:
    return ExactTrace() if name == "exact" else Hutchinson(PROBES[options.probe])


def _continuous_flow(
    data_shape: DataShape, options: ContinuousOptions, make_net: Callable[[int], Dynamics]
) -> Flow:
    """``options.blocks`` blocks of ``make_net(D)`` sharing one counter, chained if several."""
    check_options(options)
    (dim,) = data_shape
    counter = NFECounter()
    train = Integration(options.train_solver, _estimator(options.divergence, options))
    evaluate = Integration(options.eval_solver, _estimator(options.eval_divergence, options))
    blocks = [
        ContinuousFlow(
            make_net(dim), EndTime(options.end_time, options.learn_end_time), train=train,
            evaluate=evaluate, counter=counter, kinetic_weight=options.kinetic_weight,
            jacobian_weight=options.jacobian_weight, max_nfe=options.max_nfe,
        )
        for _ in range(options.blocks)
    ]  # fmt: skip
    return Flow(blocks[0] if len(blocks) == 1 else Chain(*blocks), StandardNormal((dim,)))


def check_options(options: ContinuousOptions) -> None:
    """The option bounds every ODE flow shares (vector and image); ConfigError on the first.

    Reading a config already checks them (their fields are annotated with their ranges); this
    guards flows built from options made in code."""
    problems = {
        f"model.blocks must be >= 1, got {options.blocks}": options.blocks < 1,
        f"model.end_time must be > 0, got {options.end_time}": not options.end_time > 0,
        "model.kinetic_weight and model.jacobian_weight must be >= 0, got "
        f"{options.kinetic_weight}, {options.jacobian_weight}": not min(
            options.kinetic_weight, options.jacobian_weight
        )
        >= 0,
        f"model.max_nfe must be >= 1, got {options.max_nfe}": options.max_nfe < 1,
        # Test NFE and NLL are compared with the papers: evaluation solves as FFJORD's code did.
        f"model.eval_solver must control its steps as FFJORD's code did "
        f"({SolverOptions.FFJORDS_CONTROL}); only model.train_solver may change them": not (
            options.eval_solver.is_ffjords_controller()
        ),
    }
    for problem, found in problems.items():
        if found:
            raise ConfigError(problem)


# Tiny test models solve at 1e-8, so solver error stays far below the tests' tolerances.
_TIGHT = {"method": "dopri5", "atol": 1e-8, "rtol": 1e-8}
_TINY = {"hidden": (8, 8), "train_solver": _TIGHT, "eval_solver": _TIGHT}


@register(
    "cnf", "vector", CNFOptions, tiny={**_TINY, "units": 8, "hidden": (8,)}, check_iterations=200
)
def build_cnf(data_shape: DataShape, options: CNFOptions) -> Flow:
    def make_net(dim: int) -> Dynamics:
        return PlanarHyperDynamics(dim, options.units, options.hidden, options.zero_init_last)

    return _continuous_flow(data_shape, options, make_net)


def _concat_squash(options: FFJORDOptions) -> Callable[[int], Dynamics]:
    def make_net(dim: int) -> Dynamics:
        activation = ACTIVATIONS[options.activation]
        return ConcatSquashMLP(dim, options.hidden, activation, options.zero_init_last)

    return make_net


# The same model; RNODEOptions turn on the penalties.
@register("rnode", "vector", RNODEOptions, tiny=_TINY, check_iterations=200)
@register("ffjord", "vector", FFJORDOptions, tiny=_TINY, check_iterations=200)
def build_ffjord(data_shape: DataShape, options: FFJORDOptions) -> Flow:
    return _continuous_flow(data_shape, options, _concat_squash(options))
