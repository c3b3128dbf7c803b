"""How a continuous flow's run solved its ODE in training and in evaluation, and why: the
``solvers`` entry of ``metrics.json``, so a reader of one metrics file sees the choice behind
its NFE and timings without opening the README (whose sections it names)."""

from __future__ import annotations

from replication.flows.ode import SolverOptions, is_fixed_grid

# The accuracy the papers evaluate at (FFJORD and RNODE: dopri5 at 1e-5).
PAPERS_TOLERANCE = 1e-5


def describe(solver: SolverOptions) -> str:
    """One line saying how a phase solves."""
    if is_fixed_grid(solver.method):
        return f"{solver.method} on a fixed grid of step {solver.step_size:g} in s in [0, 1]"
    parts = [
        f"{solver.method} at atol {solver.atol:g}, rtol {solver.rtol:g}",
        "error norm: one RMS over [z | logdet]"
        if solver.norm == "rms"
        else "error norm: max(RMS(z), RMS(logdet)) (FFJORD's)",
        "first step: the previous training solve's largest accepted step"
        if solver.warm_start
        else "first step: estimated",
        "lands on the end of the interval" if solver.land_on_end else "may step past the end",
        "loop: lean (replication/flows/lean_dopri5.py)"
        if solver.implementation == "lean"
        else "loop: torchdiffeq",
    ]
    return ", ".join(parts)


def _training_reasons(train: SolverOptions, evaluate: SolverOptions) -> list[str]:
    if is_fixed_grid(train.method):
        fixed = (
            "a fixed grid, as RNODE trains (Finlay et al. 2020): the NFE per training iteration "
            "is constant by construction"
        )
        reasons = [fixed]
    else:
        reasons = ["adaptive, as the papers train: the NFE per training iteration is measured"]
        if max(train.atol, train.rtol) > max(evaluate.atol, evaluate.rtol):
            reasons.append(
                "a looser tolerance than evaluation's (README, 'Training tolerance'): it changes "
                "how fast a model trains, while the test NLL is scored by the accurate solver"
            )
        if not train.is_ffjords_controller():
            reasons.append(
                "step control cut to the evaluations the controller needs (README, 'Step "
                "control of adaptive training solves'): half the evaluations per iteration for "
                "the same validation curve and test NLL in the measurements there"
            )
        if train.implementation == "lean":
            reasons.append(
                "the lean loop (README, 'Lean training solver'): torchdiffeq's steps and "
                "evaluations without its per-step bookkeeping, checked step for step against it"
            )
    reasons.append(
        "gradients by the adjoint ODE, as the paper's code (memory, not speed)"
        if train.adjoint
        else "gradients by direct backpropagation through the solver: faster than the adjoint "
        "for these models, the same gradients to solver tolerance"
    )
    return reasons


def _evaluation_reasons(evaluate: SolverOptions) -> list[str]:
    papers = (
        evaluate.method == "dopri5"
        and evaluate.is_ffjords_controller()
        and max(evaluate.atol, evaluate.rtol) <= PAPERS_TOLERANCE
    )
    if papers:
        return [
            "FFJORD's evaluation solve (dopri5 at 1e-5 or tighter, its step control, by "
            + "torchdiffeq): test NLL and test NFE are compared with the papers"
        ]
    return ["not the papers' evaluation solve: test NFE is not comparable with theirs"]


def record(model_options: object) -> dict | None:
    """The ``solvers`` entry of a run's metrics: per phase, how and why; None for a model
    without an ODE. A model that never solves in training (flow matching) has no training
    entry."""
    evaluate = getattr(model_options, "eval_solver", None)
    if not isinstance(evaluate, SolverOptions):
        return None
    entry: dict = {}
    train = getattr(model_options, "train_solver", None)
    if isinstance(train, SolverOptions):
        entry["train"] = {"how": describe(train), "why": _training_reasons(train, evaluate)}
    entry["evaluate"] = {"how": describe(evaluate), "why": _evaluation_reasons(evaluate)}
    return entry
