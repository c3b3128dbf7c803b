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

    @classmethod
    def of_step(cls, dt: float) -> SolverUnderflow:
        """The failure of a step ``dt`` too small to move the time, in the words every solver
        loop uses."""
        return cls(
            f"adaptive ODE solver step size underflowed (dt = {dt:.3g}): the dynamics are too "
            "stiff for the tolerances or blow up (regularise, loosen atol/rtol, or use a "
            "fixed-grid solver)"
        )


class NonFiniteState(SolverFailure):
    """The ODE state became NaN or infinite during a solve."""
