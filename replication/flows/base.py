"""The one flow interface shared by every method in the suite.

A normalizing flow is a base density p_Z and an invertible map f from data to latent space.
By the change of variables,

    log p_X(x) = log p_Z(f(x)) + log |det df/dx|,

which :meth:`Flow.log_prob` computes once for every method. Each method only supplies its
:class:`Bijection` (the map f with its log-determinant, in both directions).

Continuous flows can also report regularisation integrals along their trajectory (RNODE's
kinetic energy and Jacobian norm, Finlay et al. 2020) and count the evaluations of their
dynamics; every other bijection reports zeros. The training objective is :meth:`Flow.loss`, so
the training loop treats all methods alike and knows no family of flows.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple, Protocol

import torch
from torch import Tensor, nn


class Penalty(NamedTuple):
    """Per-sample regularisation integrals accumulated along a flow (zero where not defined).

    ``kinetic`` and ``jacobian`` are the raw integrals, reported in the metrics; ``weighted`` is
    the part of the training loss they contribute, each block applying its own weights.
    """

    kinetic: Tensor
    jacobian: Tensor
    weighted: Tensor

    @staticmethod
    def zeros_like(reference: Tensor) -> Penalty:
        zero = reference.new_zeros(reference.shape[0])
        return Penalty(zero, zero, zero)

    def __add__(self, other: Penalty) -> Penalty:  # type: ignore[override]
        return Penalty(*(mine + theirs for mine, theirs in zip(self, other, strict=True)))


# Which solver an ODE bijection integrates with: its training solver (cheap, looser) or its
# evaluation solver (accurate, as the papers evaluated). Chosen explicitly, never by .train().
Phase = Literal["train", "evaluate"]


class EvaluationCounter(Protocol):
    """Counts evaluations of a flow's dynamics (e.g. :class:`replication.flows.ode.NFECounter`)."""

    count: int


class Bijection(nn.Module, ABC):
    """An invertible map ``y = f(x)`` acting on a batch, with ``log|det df/dx|`` per sample.

    A bijection that evaluates dynamics (an ODE block) sets ``counter``; blocks of one flow may
    share one counter, which :meth:`Flow.evaluations` then reads once.
    """

    counter: EvaluationCounter | None = None

    @abstractmethod
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(f(x), log|det df/dx|)``; the log-determinant has shape ``[batch]``."""

    @abstractmethod
    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(f^-1(y), log|det df^-1/dy|)``."""

    def forward_with_penalty(self, x: Tensor) -> tuple[Tensor, Tensor, Penalty]:
        """Like :meth:`forward`, also returning the regularisation integrals of the map."""
        y, logdet = self(x)
        return y, logdet, Penalty.zeros_like(x)

    def use_phase(self, phase: Phase) -> Phase:
        """Integrate with the ``phase`` solver from now on; returns the phase it replaces. A
        bijection without a solver has nothing to switch."""
        return phase


class Chain(Bijection):
    """The composition ``f_n o ... o f_1``: log-determinants add up."""

    def __init__(self, *steps: Bijection) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, logdet = step(x)
            total = total + logdet
        return x, total

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        total = y.new_zeros(y.shape[0])
        for step in reversed(self.steps):
            y, logdet = step.inverse(y)
            total = total + logdet
        return y, total

    def forward_with_penalty(self, x: Tensor) -> tuple[Tensor, Tensor, Penalty]:
        total, penalty = x.new_zeros(x.shape[0]), Penalty.zeros_like(x)
        for step in self.steps:
            x, logdet, step_penalty = step.forward_with_penalty(x)
            total, penalty = total + logdet, penalty + step_penalty
        return x, total, penalty


def _sum_event(values: Tensor) -> Tensor:
    """Sum every dimension but the batch one."""
    return values.reshape(values.shape[0], -1).sum(dim=1)


class BaseDistribution(nn.Module, ABC):
    """A fixed or learned density on the latent space, over an event of shape ``event_shape``."""

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        # A buffer tells which device and dtype the distribution lives on.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @abstractmethod
    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of each sample, shape ``[batch]``."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples of shape ``[n, *event_shape]``."""

    def _noise_shape(self, n: int) -> tuple[int, ...]:
        return (n, *self.event_shape)


class StandardNormal(BaseDistribution):
    """N(0, I): log p(z) = -1/2 ||z||^2 - D/2 log(2 pi)."""

    def log_prob(self, z: Tensor) -> Tensor:
        return _sum_event(-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        anchor = self._anchor
        return torch.randn(
            self._noise_shape(n), generator=generator, device=anchor.device, dtype=anchor.dtype
        )


class StandardLogistic(BaseDistribution):
    """Independent standard logistics, NICE's prior: log p(z) = -sum softplus(z) + softplus(-z)."""

    def log_prob(self, z: Tensor) -> Tensor:
        return _sum_event(-(nn.functional.softplus(z) + nn.functional.softplus(-z)))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        anchor = self._anchor
        u = torch.rand(
            self._noise_shape(n), generator=generator, device=anchor.device, dtype=anchor.dtype
        )
        # Inverse CDF; clamping keeps u away from {0, 1} where the logit is infinite.
        eps = torch.finfo(u.dtype).eps
        return torch.logit(u.clamp(eps, 1 - eps))


class DiagonalNormal(BaseDistribution):
    """N(mu, diag(sigma^2)) with learned mean and log-scale: Glow's learned prior."""

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__(event_shape)
        self.loc = nn.Parameter(torch.zeros(event_shape))
        self.log_scale = nn.Parameter(torch.zeros(event_shape))

    def log_prob(self, z: Tensor) -> Tensor:
        standardized = (z - self.loc) * torch.exp(-self.log_scale)
        return _sum_event(-0.5 * standardized.pow(2) - self.log_scale - 0.5 * math.log(2 * math.pi))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(
            self._noise_shape(n), generator=generator, device=self.loc.device, dtype=self.loc.dtype
        )
        return self.loc + torch.exp(self.log_scale) * noise


class Objective(Protocol):
    """A training objective: ``(flow, batch) -> (loss, stats)``, as :meth:`Flow.loss` returns,
    and its ``name``, which the metrics record (it says what the training loss measures)."""

    name: str

    def __call__(self, flow: Flow, x: Tensor) -> tuple[Tensor, dict[str, Tensor | int]]: ...


class MaximumLikelihood:
    """Maximum likelihood plus the weighted regularisers of the transform (zero but for RNODE),

        loss = -1/B sum_i log p(x_i) + 1/B sum_i (lambda_K K_i + lambda_J J_i),

    with stats ``loss`` (the first term, the batch NLL: what the metrics report as the training
    loss), ``nfe_forward`` (evaluations of the dynamics this call spent, 0 without any) and the
    mean raw integrals ``kinetic`` and ``jacobian``, as detached tensors (read them after the
    optimiser step: no device sync here). Another objective's stats need ``loss``; the loop
    records 0 for any other key left out.
    """

    name = "maximum likelihood"

    def __call__(self, flow: Flow, x: Tensor) -> tuple[Tensor, dict[str, Tensor | int]]:
        start = flow.evaluations()
        log_prob, penalty = flow.log_prob_with_penalty(x)
        nll = -log_prob.mean()
        loss = nll + penalty.weighted.mean()
        stats = {
            "loss": nll.detach(),
            "nfe_forward": flow.evaluations() - start,
            "kinetic": penalty.kinetic.mean().detach(),
            "jacobian": penalty.jacobian.mean().detach(),
        }
        return loss, stats


maximum_likelihood = MaximumLikelihood()


class Flow(nn.Module):
    """A normalizing flow: ``transform`` maps data to latent space, ``base`` is the latent density.

    Every method in the suite is an instance of this one class; methods differ only in the
    bijection and the base density they are built with, and in the ``objective`` they train by
    (maximum likelihood unless a method passes another, e.g. a regression on its vector field).
    """

    def __init__(
        self, transform: Bijection, base: BaseDistribution, objective: Objective | None = None
    ) -> None:
        super().__init__()
        self.transform = transform
        self.base = base
        self.objective = objective or maximum_likelihood
        # Walked once: every training step asks for them (a walk of the module tree cost a
        # tenth of a small RealNVP's step). A flow's structure is fixed once it is built.
        self._bijections = [m for m in transform.modules() if isinstance(m, Bijection)]
        counters = (b.counter for b in self._bijections if b.counter is not None)
        self._counter_list = list({id(counter): counter for counter in counters}.values())

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per sample, shape ``[batch]``, by the change of variables."""
        z, logdet = self.transform(x)
        return self.base.log_prob(z) + logdet

    def log_prob_with_penalty(self, x: Tensor) -> tuple[Tensor, Penalty]:
        """log p(x) and the transform's regularisation integrals, both per sample."""
        z, logdet, penalty = self.transform.forward_with_penalty(x)
        return self.base.log_prob(z) + logdet, penalty

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor | int]]:
        """The training objective on batch ``x`` and the stats the loop records of it (see
        :class:`MaximumLikelihood`, the default, for what they are)."""
        return self.objective(self, x)

    @contextmanager
    def solving(self, phase: Phase) -> Iterator[Flow]:
        """Within the block, the flow's ODE bijections integrate with their ``phase`` solver.

        Outside any such block they use their evaluation solver (the accurate one), so a loaded
        run, a check or a test score is accurate unless a caller says otherwise; the training
        step is the one place that says ``solving("train")``. ``.train()``/``.eval()`` keep
        torch's meaning (data-dependent initialisation) and never change a solver.
        """
        previous = [bijection.use_phase(phase) for bijection in self._bijections]
        try:
            yield self
        finally:
            for bijection, earlier in zip(self._bijections, previous, strict=True):
                bijection.use_phase(earlier)

    def _counters(self) -> list[EvaluationCounter]:
        """The distinct evaluation counters of the flow's bijections (shared ones once)."""
        return self._counter_list

    def evaluations(self) -> int:
        """Evaluations of the flow's dynamics so far (NFE), over all its blocks; 0 for flows
        that evaluate none. Differences around a call give its NFE: around ``loss.backward()``,
        the backward (adjoint) NFE, 0 with direct backpropagation."""
        return sum(counter.count for counter in self._counters())

    def counts_evaluations(self) -> bool:
        """Whether the flow evaluates dynamics, i.e. whether NFE applies to it."""
        return bool(self._counters())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples by pushing base samples through the inverse transform."""
        return self.rsample(n, generator)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Like :meth:`sample`, differentiable with respect to the flow's parameters (the
        reparameterisation x = f^-1(z), z from the base density, as in torch.distributions)."""
        x, _ = self.transform.inverse(self.base.sample(n, generator=generator))
        return x
