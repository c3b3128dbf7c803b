"""The augmented ODE a continuous flow solves: its state, time rescaling and trace estimators.

By the instantaneous change of variables (Chen et al. 2018, Thm. 1), ``dz/dt = f(t, z)``
carries ``d log|det dz(t)/dz(0)| / dt = tr(df/dz)``. The flow integrates over the rescaled time
s in [0, 1] with the field ``T f(T s, z)``, so the end time T can be learned without the solver
grid depending on it. The state is one packed tensor

    [z | logdet]                         (:class:`DensityField`),
    [z | logdet | kinetic | jacobian]    (:class:`RegularisedField`, RNODE),

with, per unit of s (each a rate over real time t = T s, times T):

    d logdet/ds  = T tr(df/dz),
    d kinetic/ds = T 1/2 ||f||^2 / D,          kinetic energy     (Finlay et al. 2020)
    d jacobian/ds = T ||e^T df/dz||^2 / D,     Jacobian norm      (Finlay et al. 2020)

so the last two are integrals over real time, ``int_0^T ... dt``. The Jacobian term reuses the
trace probe e; with the exact trace it is the exact ``||df/dz||_F^2 / D``, which equals its
expectation over Gaussian (or Rademacher) probes, E ||e^T J||^2 = tr(J J^T) = ||J||_F^2.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from replication.flows.dynamics import Dynamics
from replication.flows.ode import SolveMeter


class EndTime(nn.Module):
    """The end time T of a flow, kept positive as ``T = exp(theta)``; learned or fixed.

    FFJORD learns T from 0.5 (Grathwohl et al. 2019, toy runs); the log parametrisation is our
    choice (FFJORD squares a square root), it keeps T > 0 and makes steps in theta relative.
    """

    def __init__(self, initial: float, learn: bool) -> None:
        super().__init__()
        if initial <= 0:
            raise ValueError(f"the end time must be positive, got {initial}")
        log_value = torch.tensor(math.log(initial))
        if learn:
            self.log_value = nn.Parameter(log_value)
        else:
            self.register_buffer("log_value", log_value)

    def forward(self) -> Tensor:
        return self.log_value.exp()


class Divergence(ABC):
    """``tr(df/dz)`` during one solve (a probe, if any, stays fixed throughout the solve)."""

    @abstractmethod
    def trace(self, dynamics: Dynamics, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t, z)`` and the (estimated) trace per sample."""

    @abstractmethod
    def trace_and_jacobian_norm(
        self, dynamics: Dynamics, t: Tensor, z: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``f``, the trace and an unbiased ``||df/dz||_F^2``, each per sample."""


class TraceEstimator(ABC):
    """A choice of divergence, fixed at construction; :meth:`start` begins one solve."""

    @abstractmethod
    def start(self, z0: Tensor) -> Divergence:
        """The divergence for a solve starting at ``z0`` (draws the probe once, if any)."""


class ExactTrace(TraceEstimator, Divergence):
    """The exact trace, by forward-mode Jacobians (no backward passes; cheap in low D)."""

    def start(self, z0: Tensor) -> Divergence:
        return self

    def trace(self, dynamics: Dynamics, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        return dynamics.forward_with_trace(t, z)

    def trace_and_jacobian_norm(
        self, dynamics: Dynamics, t: Tensor, z: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        value, tangents = dynamics.forward_with_tangents(t, z)
        trace = tangents.diagonal(dim1=0, dim2=2).sum(-1)
        return value, trace, tangents.square().sum((0, 2))


# Probes are drawn by torch's CPU generator and then moved to z's device: a run draws the same
# probes on every device (so a GPU run can be checked against a CPU run with the same seed, and
# resumes exactly from the CPU generator's state), and on the CPU the numbers are those of
# drawing in place. Copying one probe per solve to a GPU costs far less than the solve.
def gaussian_probe(z: Tensor) -> Tensor:
    """e ~ N(0, I), shaped like z."""
    return torch.randn(z.shape, dtype=z.dtype).to(z.device)


def rademacher_probe(z: Tensor) -> Tensor:
    """e uniform on {-1, +1}^D, shaped like z: the lower-variance Hutchinson probe."""
    return torch.empty(z.shape, dtype=z.dtype).bernoulli_(0.5).mul_(2).sub_(1).to(z.device)


PROBES: dict[str, Callable[[Tensor], Tensor]] = {
    "gaussian": gaussian_probe,
    "rademacher": rademacher_probe,
}


class Hutchinson(TraceEstimator):
    """Hutchinson's estimator ``tr(J) = E[e^T J e]`` for E[e e^T] = I (Hutchinson 1989, as used
    by Grathwohl et al. 2019), with one probe per sample drawn by ``probe`` once per solve and
    fixed during it (redrawing inside the solve makes the adaptive solver's step count
    explode)."""

    def __init__(self, probe: Callable[[Tensor], Tensor]) -> None:
        self.probe = probe

    def start(self, z0: Tensor) -> Divergence:
        return _ProbedTrace(self.probe(z0.detach()))


class _ProbedTrace(Divergence):
    """Hutchinson with a fixed probe e: one vector-Jacobian product ``e^T df/dz`` per call."""

    def __init__(self, probe: Tensor) -> None:
        self.probe = probe

    def _probe_row(self, dynamics: Dynamics, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        # Build a differentiable estimate only where gradients are wanted: direct backprop
        # during training, or the adjoint solve (which runs with gradients enabled).
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():
            # Without gradients (evaluation, the adjoint's forward solve) z may still say
            # requires_grad: a view made under no_grad of a state that requires grad is not
            # a node of any graph, so differentiate with respect to a fresh leaf instead.
            if not (differentiable and z.requires_grad):
                z = z.detach().requires_grad_(True)
            value = dynamics(t, z)
            (row,) = torch.autograd.grad(value, z, self.probe, create_graph=differentiable)
        return (value if differentiable else value.detach()), row

    def trace(self, dynamics: Dynamics, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        value, row = self._probe_row(dynamics, t, z)
        return value, (row * self.probe).sum(1)

    def trace_and_jacobian_norm(
        self, dynamics: Dynamics, t: Tensor, z: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        value, row = self._probe_row(dynamics, t, z)
        return value, (row * self.probe).sum(1), row.square().sum(1)


class AugmentedField(nn.Module, ABC):
    """The right-hand side the solver sees during one solve, in rescaled time s in [0, 1].

    Built once per solve: it holds that solve's divergence (and probe) and evaluation meter.
    ``callback_step`` (and its adjoint twin) is torchdiffeq's per-step hook; it turns a step
    size underflow into :class:`~replication.flows.ode.SolverUnderflow`, also during the
    adjoint solve inside ``loss.backward()``. The accept/reject hooks of the primal solve tell
    the meter where its evaluations went, and which first step it accepted.
    """

    def __init__(
        self, dynamics: Dynamics, end_time: EndTime, divergence: Divergence, meter: SolveMeter
    ) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.end_time = end_time
        self.divergence = divergence
        self.meter = meter
        self.dim = dynamics.dim

    def callback_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.meter.step(t0, dt)

    def callback_accept_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.meter.accepted(dt)

    def callback_reject_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.meter.rejected()

    def callback_step_adjoint(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.meter.check_step(t0, dt)


class DensityField(AugmentedField):
    """``d[z | logdet]/ds = T [f(Ts, z) | tr(df/dz)]``."""

    def forward(self, s: Tensor, state: Tensor) -> Tensor:
        self.meter.tick()
        end = self.end_time()
        value, trace = self.divergence.trace(self.dynamics, end * s, state[:, : self.dim])
        return torch.cat([value, trace.unsqueeze(1)], dim=1) * end


class RegularisedField(AugmentedField):
    """``d[z | logdet | kinetic | jacobian]/ds = T [f | tr J | ||f||^2 / 2D | ||e^T J||^2 / D]``."""

    def forward(self, s: Tensor, state: Tensor) -> Tensor:
        self.meter.tick()
        end = self.end_time()
        value, trace, frobenius = self.divergence.trace_and_jacobian_norm(
            self.dynamics, end * s, state[:, : self.dim]
        )
        kinetic = value.square().sum(1) * (0.5 / self.dim)
        rates = torch.stack([trace, kinetic, frobenius / self.dim], dim=1)
        return torch.cat([value, rates], dim=1) * end
