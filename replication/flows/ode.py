"""ODE machinery for continuous flows: solver settings, evaluation counting, failures, solving.

Solving goes through torchdiffeq (Chen et al. 2018): ``odeint`` backpropagates through the
solver's operations, ``odeint_adjoint`` solves the adjoint ODE backwards instead (Chen et al.
2018, Sec. 2), trading time for memory. The state of a continuous flow is one packed
tensor ``[z | logdet | extra...]`` of shape ``[B, D + 1 + k]``; :class:`DensityNorm` makes the
adaptive step size see only ``z`` and ``logdet`` (the mixed RMS norm torchdiffeq applies to a
``(z, logdet)`` tuple), never the regularisation integrals appended after them (as Finlay et
al. 2020 do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.solvers import FixedGridODESolver

from replication.typed import Bounds, ConfigError, PositiveFloat, choice_error

# A fraction of the rescaled time [0, 1]: 0.25 means four steps.
StepSize = Annotated[float, Bounds(low=0, high=1, low_open=True)]

# torchdiffeq's own solver table, less the SciPy wrapper: it detaches the state (no gradients).
SOLVER_NAMES: tuple[str, ...] = tuple(name for name in SOLVERS if name != "scipy_solver")


def is_fixed_grid(method: str) -> bool:
    """Whether torchdiffeq's ``method`` steps on a fixed grid (needs a step size)."""
    return issubclass(SOLVERS[method], FixedGridODESolver)


@dataclass(frozen=True)
class SolverOptions:
    """How one phase (training or evaluation) solves the flow's ODE.

    Times are in the rescaled time s in [0, 1] that every continuous flow integrates over, so
    ``step_size = 0.25`` means 4 steps whatever the end time T. ``atol``/``rtol`` apply to
    adaptive methods, ``step_size`` only to fixed-grid ones. ``adjoint`` backpropagates by the
    adjoint ODE (its solve uses the same method and tolerances). Ranges are checked when the
    config is read, under the key path that says which phase: ``model.train_solver.atol``.
    """

    method: str = "dopri5"
    atol: PositiveFloat = 1e-5
    rtol: PositiveFloat = 1e-5
    step_size: StepSize | None = None
    adjoint: bool = False

    def __post_init__(self) -> None:
        if self.method not in SOLVER_NAMES:
            raise choice_error("ODE solver", self.method, SOLVER_NAMES)
        if is_fixed_grid(self.method) and self.step_size is None:
            raise ConfigError(f"fixed-grid solver {self.method!r} needs a step_size in (0, 1]")
        if not is_fixed_grid(self.method) and self.step_size is not None:
            raise ConfigError(
                f"adaptive solver {self.method!r} takes atol/rtol, not step_size "
                f"(fixed-grid solvers: {', '.join(n for n in SOLVER_NAMES if is_fixed_grid(n))})"
            )


class SolverFailure(RuntimeError):
    """A solve that cannot finish; the training loop catches this and stops cleanly."""


class NFELimitExceeded(SolverFailure):
    """One solve needed more evaluations of the dynamics than ``max_nfe`` allows."""


class SolverUnderflow(SolverFailure):
    """The adaptive step size underflowed: the dynamics are too stiff for the tolerances."""


class NonFiniteState(SolverFailure):
    """The ODE state became NaN or infinite during a solve."""


class NFECounter:
    """Counts every evaluation of the dynamics, over all blocks of one flow.

    The builder creates one counter per flow and hands it to every block; read it with
    :func:`replication.flows.continuous.function_evaluations`. Differences of the count around
    ``loss.backward()`` give the backward (adjoint) NFE, zero with direct backpropagation.
    """

    def __init__(self) -> None:
        self.count = 0


class SolveMeter:
    """Counts the evaluations of one solve into ``counter`` and enforces ``max_nfe``.

    A meter lives as long as one trajectory. With the adjoint, the forward solve runs with
    gradients disabled and the adjoint solve of the same trajectory with them enabled, so the
    meter keeps one tally per grad mode: each tally then covers exactly one solve, and the
    ceiling bounds each solve separately.
    """

    def __init__(self, counter: NFECounter, max_nfe: int) -> None:
        self.counter = counter
        self.max_nfe = max_nfe
        self.tallies = [0, 0]

    def tick(self) -> None:
        self.counter.count += 1
        mode = int(torch.is_grad_enabled())
        self.tallies[mode] += 1
        if self.tallies[mode] > self.max_nfe:
            raise NFELimitExceeded(
                f"one ODE solve exceeded max_nfe = {self.max_nfe} evaluations of the dynamics; "
                "they are too stiff for the solver tolerances (regularise, loosen the "
                "tolerances, use a fixed-grid solver, or raise max_nfe)"
            )

    @staticmethod
    def check_step(t0: Tensor, dt: Tensor) -> None:
        """Raise :class:`SolverUnderflow` where torchdiffeq would assert ``t0 + dt > t0``."""
        if t0 + dt == t0:
            raise SolverUnderflow(_UNDERFLOW.format(dt=float(dt)))


_UNDERFLOW = (
    "adaptive ODE solver step size underflowed (dt = {dt:.3g}): the dynamics are too stiff for "
    "the tolerances or blow up (regularise, loosen atol/rtol, or use a fixed-grid solver)"
)


class DensityNorm:
    """Error norm of a packed state ``[z | logdet | extra...]``: max(RMS(z), RMS(logdet)).

    Columns after ``dim + 1`` (regularisation integrals) are ignored, so they never shrink the
    step (Finlay et al. 2020 exclude them from step-size control).
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __call__(self, state: Tensor) -> Tensor:
        z, logdet = state[:, : self.dim], state[:, self.dim]
        return torch.maximum(z.square().mean().sqrt(), logdet.square().mean().sqrt())


def integrate(field: nn.Module, state: Tensor, times: Tensor, solver: SolverOptions) -> Tensor:
    """Solve ``d state/ds = field(s, state)`` from ``times[0]`` to ``times[-1]``; the end state.

    ``state`` is packed ``[z | logdet | extra...]`` with ``z`` of width ``field.dim``. Solver
    assertions become :class:`SolverFailure` subclasses.
    """
    if is_fixed_grid(solver.method):
        options: dict = {"step_size": solver.step_size}
    else:
        options = {"norm": DensityNorm(field.dim)}
    solve = odeint_adjoint if solver.adjoint else odeint
    try:
        path = solve(
            field,
            state,
            times,
            rtol=solver.rtol,
            atol=solver.atol,
            method=solver.method,
            options=options,
        )
    except AssertionError as error:
        failure = _failure(str(error))
        if failure is None:
            raise
        raise failure from error
    return path[-1]


def _failure(message: str) -> SolverFailure | None:
    """The failure behind one of torchdiffeq's solver assertions, if it is one we know."""
    if message.startswith("underflow in dt"):
        return SolverUnderflow(_UNDERFLOW.format(dt=float(message.split()[-1])))
    if message.startswith("non-finite values in state"):
        return NonFiniteState("the ODE state became NaN or infinite during the solve")
    return None
