"""ODE machinery for continuous flows: solver settings, evaluation counting, failures, solving.

Solving goes through torchdiffeq (Chen et al. 2018): ``odeint`` backpropagates through the
solver's operations, ``odeint_adjoint`` solves the adjoint ODE backwards instead (Chen et al.
2018, Sec. 2), trading time for memory. A training solve may instead run the same dopri5
method in the project's lean loop (:mod:`.lean_dopri5`, ``implementation: lean``). The state
of a continuous flow is one packed tensor ``[z | logdet | extra...]`` of shape
``[B, D + 1 + k]``; :class:`DensityNorm` makes the adaptive step size see only ``z`` and
``logdet`` (the mixed RMS norm torchdiffeq applies to a ``(z, logdet)`` tuple), never the
regularisation integrals appended after them (as Finlay et al. 2020 do).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor, nn

from replication.flows.solver_failures import (
    NFELimitExceeded,
    NonFiniteState,
    SolverFailure,
    SolverUnderflow,
)
from replication.typed import Bounds, ConfigError, PositiveFloat, choice_error

# A fraction of the rescaled time [0, 1]: 0.25 means four steps.
StepSize = Annotated[float, Bounds(low=0, high=1, low_open=True)]

# The fields define torchdiffeq's accept/reject callbacks (step statistics of adaptive solves);
# fixed-grid solvers have no such steps and would warn about them on every run.
warnings.filterwarnings("ignore", message=r"Solver '\w+' does not support callbacks")


@functools.cache
def _solvers() -> dict[str, bool]:
    """torchdiffeq's own solver table, less the SciPy wrapper (it detaches the state: no
    gradients), as ``{name: steps on a fixed grid}``. Imported on first use: torchdiffeq
    imports SciPy's integrate (0.4 s of a job's start-up), which a run without an ODE never
    needs."""
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import FixedGridODESolver

    return {
        name: issubclass(solver, FixedGridODESolver)
        for name, solver in SOLVERS.items()
        if name != "scipy_solver"
    }


def solver_names() -> tuple[str, ...]:
    """The ``method`` names a :class:`SolverOptions` accepts."""
    return tuple(_solvers())


def is_fixed_grid(method: str) -> bool:
    """Whether torchdiffeq's ``method`` steps on a fixed grid (needs a step size)."""
    return _solvers()[method]


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
    # Error norm of adaptive steps: "max" = max(RMS(z), RMS(logdet)), what FFJORD's code did
    # (torchdiffeq's norm of a (z, logdet) tuple at the time); "rms" = one RMS over [z | logdet].
    norm: Literal["max", "rms"] = "max"
    # Start each training solve with the largest step the previous one accepted, instead of
    # estimating a first step (an evaluation, and a first step far too small to keep).
    warm_start: bool = False
    # Never step past the end of the interval (torchdiffeq's step_t): torchdiffeq otherwise
    # takes the last step as large as the controller proposes and interpolates back, and such
    # overshooting steps are often rejected.
    land_on_end: bool = False
    # Who runs the solve: torchdiffeq, or for training solves by direct backpropagation the
    # project's lean dopri5 loop (flows/lean_dopri5.py: the same steps, less bookkeeping).
    implementation: Literal["torchdiffeq", "lean"] = "torchdiffeq"

    def __post_init__(self) -> None:
        if self.method not in solver_names():
            raise choice_error("ODE solver", self.method, solver_names())
        if is_fixed_grid(self.method) and self.step_size is None:
            raise ConfigError(f"fixed-grid solver {self.method!r} needs a step_size in (0, 1]")
        if not is_fixed_grid(self.method) and self.step_size is not None:
            raise ConfigError(
                f"adaptive solver {self.method!r} takes atol/rtol, not step_size "
                f"(fixed-grid solvers: {', '.join(n for n in solver_names() if is_fixed_grid(n))})"
            )
        if self.implementation == "lean" and (
            self.method != "dopri5" or self.adjoint or not self.land_on_end
        ):
            raise ConfigError(
                "implementation 'lean' is a dopri5 loop for direct backpropagation that lands "
                f"on the end: it needs method: dopri5 (got {self.method!r}), adjoint: false "
                f"(got {str(self.adjoint).lower()}) and land_on_end: true "
                f"(got {str(self.land_on_end).lower()})"
            )
        if is_fixed_grid(self.method) and not self.is_ffjords_controller():
            raise ConfigError(
                f"norm, warm_start and land_on_end apply to adaptive solvers only, not "
                f"{self.method!r}"
            )

    # The settings is_ffjords_controller() asks for, as a config spells them (error messages).
    FFJORDS_CONTROL = (
        "norm: max, warm_start: false, land_on_end: false, implementation: torchdiffeq"
    )

    def is_ffjords_controller(self) -> bool:
        """Whether adaptive steps are controlled as FFJORD's code did (the defaults), by
        torchdiffeq."""
        return (
            self.norm == "max"
            and not self.warm_start
            and not self.land_on_end
            and self.implementation == "torchdiffeq"
        )


class NFECounter:
    """Counts every evaluation of the dynamics, over all blocks of one flow.

    The builder creates one counter per flow and hands it to every block; read it with
    :meth:`replication.flows.base.Flow.evaluations`. Differences of the count around
    ``loss.backward()`` give the backward (adjoint) NFE, zero with direct backpropagation.
    """

    def __init__(self) -> None:
        self.count = 0
        # Where the evaluations of primal (not adjoint) adaptive solves went: evaluations before
        # the first step (the initial derivative and, without a warm start, the step-size
        # estimate), accepted and rejected steps.
        self.solves = 0
        self.initial = 0
        self.accepted = 0
        self.rejected = 0


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
        self.largest_accepted: float | None = None  # the primal solve's largest accepted step
        self.started = False

    def step(self, t0: Tensor, dt: Tensor) -> None:
        """Before each step of the primal solve (torchdiffeq's ``callback_step``)."""
        self.check_step(t0, dt)
        if not self.started:  # the evaluations so far were spent choosing the first step
            self.started = True
            self.counter.solves += 1
            self.counter.initial += self.tallies[int(torch.is_grad_enabled())]

    def accepted(self, dt: Tensor) -> None:
        self.counter.accepted += 1
        step = abs(float(dt.detach()))
        self.largest_accepted = max(step, self.largest_accepted or 0.0)

    def rejected(self) -> None:
        self.counter.rejected += 1

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
            raise SolverUnderflow.of_step(float(dt))


class DensityNorm:
    """Error norm of a packed state ``[z | logdet | extra...]``: max(RMS(z), RMS(logdet)), or
    with ``joint`` one RMS over ``[z | logdet]``.

    Columns after ``dim + 1`` (regularisation integrals) are ignored, so they never shrink the
    step (Finlay et al. 2020 exclude them from step-size control).
    """

    def __init__(self, dim: int, joint: bool = False) -> None:
        self.dim = dim
        self.joint = joint

    def __call__(self, state: Tensor) -> Tensor:
        if self.joint:
            return state[:, : self.dim + 1].square().mean().sqrt()
        z, logdet = state[:, : self.dim], state[:, self.dim]
        return torch.maximum(z.square().mean().sqrt(), logdet.square().mean().sqrt())


def integrate(
    field: nn.Module,
    state: Tensor,
    times: Tensor,
    solver: SolverOptions,
    first_step: float | None = None,
) -> Tensor:
    """Solve ``d state/ds = field(s, state)`` from ``times[0]`` to ``times[-1]``; the end state.

    ``state`` is packed ``[z | logdet | extra...]`` with ``z`` of width ``field.dim``. An
    adaptive solve starts with ``first_step`` when given, else estimates it. Solver assertions
    become :class:`SolverFailure` subclasses.
    """
    norm = DensityNorm(field.dim, joint=solver.norm == "rms")  # used by adaptive solves only
    if solver.implementation == "lean":
        from replication.flows import lean_dopri5

        start, end = (float(t) for t in times)
        return lean_dopri5.solve(
            field, state, start, end, solver.atol, solver.rtol, norm, first_step
        )
    adjoint: dict = {}
    if is_fixed_grid(solver.method):
        options: dict = {"step_size": solver.step_size}
    else:
        options = {"norm": norm}
        if first_step is not None:
            options["first_step"] = first_step
        if solver.land_on_end:
            options["step_t"] = times
        # The adjoint solve keeps torchdiffeq's defaults: its own norm and step estimate.
        adjoint = {"adjoint_options": {}} if solver.adjoint else {}
    from torchdiffeq import odeint, odeint_adjoint  # imported once, on the first solve

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
            **adjoint,
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
        return SolverUnderflow.of_step(float(message.split()[-1]))
    if message.startswith("non-finite values in state"):
        return NonFiniteState("the ODE state became NaN or infinite during the solve")
    return None
