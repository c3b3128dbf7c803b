"""How an ODE solve can fail: the errors the training loop and evaluation record as a failed
run instead of crashing. Their own module, so that every solver loop (torchdiffeq's wrapper in
:mod:`.ode`, the lean loop in :mod:`.lean_dopri5`) raises the same ones."""

from __future__ import annotations


class SolverFailure(RuntimeError):
    """A solve that cannot finish; the training loop catches this and stops cleanly."""


class NFELimitExceeded(SolverFailure):
    """One solve needed more evaluations of the dynamics than ``max_nfe`` allows."""


class SolverUnderflow(SolverFailure):
    """The adaptive step size underflowed: the dynamics are too stiff for the tolerances."""


class NonFiniteState(SolverFailure):
    """The ODE state became NaN or infinite during a solve."""
