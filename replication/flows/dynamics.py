"""Vector fields f(t, z) for continuous normalizing flows on vector data, with exact Jacobians.

A CNF needs tr(df/dz) at every evaluation (Chen et al. 2018, Thm. 1: d log p(z(t))/dt =
-tr(df/dz)). In low dimension the exact trace is cheap if the Jacobian is carried forward
through the network alongside its value (forward mode): for an input of dimension D the tangent
``J_h = dh/dz`` of each hidden layer is a ``(D, B, width)`` tensor, so the exact Jacobian costs
about D extra batched matrix products and no backward pass. The rules used below, for
``y = h W_g + beta`` (a linear map with a fixed-in-z gate folded into ``W_g``) and ``a = s(y)``:

    J_y = J_h W_g,        J_a = s'(y) * J_h.

Tangents are stored *tangent-major*: ``tangents[j, b, i] = d f_i / d z_j`` for sample b, so
each layer is a single folded matrix product over the ``D * B`` rows.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn
from torch.nn import functional


class Dynamics(nn.Module, ABC):
    """A time-dependent vector field ``f(t, z)`` on ``R^D`` with a forward-mode Jacobian.

    ``t`` is a 0-dim tensor, ``z`` has shape ``[B, D]``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @abstractmethod
    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """``f(t, z)``, shape ``[B, D]``."""

    @abstractmethod
    def forward_with_tangents(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t, z)`` and the tangent-major Jacobian ``T[j, b, i] = df_i/dz_j``, ``[D, B, D]``."""

    def forward_with_jacobian(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t, z)`` and the Jacobian ``J[b, i, j] = d f_i / d z_j``, shape ``[B, D, D]``."""
        value, tangents = self.forward_with_tangents(t, z)
        return value, tangents.permute(1, 2, 0)

    def forward_with_trace(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t, z)`` and the exact ``tr(df/dz)`` per sample, shape ``[B]``."""
        value, tangents = self.forward_with_tangents(t, z)
        return value, tangents.diagonal(dim1=0, dim2=2).sum(-1)


class Activation(ABC):
    """An elementwise nonlinearity ``a = s(y)`` that also pushes tangents through itself."""

    @abstractmethod
    def value(self, y: Tensor) -> Tensor:
        """``s(y)``."""

    @abstractmethod
    def value_and_tangents(self, y: Tensor, tangents: Tensor) -> tuple[Tensor, Tensor]:
        """``s(y)`` and ``s'(y) * tangents`` (tangents broadcast against y from the left)."""


class Tanh(Activation):
    """``tanh``, with ``tanh'(y) = 1 - tanh(y)^2``."""

    def value(self, y: Tensor) -> Tensor:
        return torch.tanh(y)

    def value_and_tangents(self, y: Tensor, tangents: Tensor) -> tuple[Tensor, Tensor]:
        a = torch.tanh(y)
        # aten's tanh_backward(g, a) = g * (1 - a^2) in one kernel (autograd's own rule for
        # tanh, itself differentiable): a third of the cost of spelling it out.
        return a, torch.ops.aten.tanh_backward(tangents, a)


class Softplus(Activation):
    """``softplus(y) = log(1 + e^y)``, with ``softplus'(y) = sigmoid(y)``."""

    def value(self, y: Tensor) -> Tensor:
        return functional.softplus(y)

    def value_and_tangents(self, y: Tensor, tangents: Tensor) -> tuple[Tensor, Tensor]:
        return functional.softplus(y), tangents * torch.sigmoid(y)


ACTIVATIONS: dict[str, Activation] = {"tanh": Tanh(), "softplus": Softplus()}


def _uniform(*shape: int, bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class ConcatSquashMLP(Dynamics):
    """FFJORD's free-form dynamics (Grathwohl et al. 2019, their toy-data architecture): an MLP
    of concat-squash layers, each

        h' = (W h + b) * sigmoid(a t + c) + d t,

    a linear map of h gated by a sigmoid of t plus a bias linear in t, with ``activation``
    between layers (not after the last). Written with the gate folded into the weight,
    ``h' = h W_g + beta`` where ``W_g = W^T diag(g)``, ``g = sigmoid(a t + c)`` and
    ``beta = b * g + d t``, so value and tangents share one gated weight per layer.

    Per-layer vectors ``a, c, d, b`` are stored concatenated over layers (``gate_weight``,
    ``gate_bias``, ``time_weight``, ``bias``) so the t-dependent parts of every layer cost four
    operations per evaluation. Initialisation is PyTorch's ``nn.Linear`` default (uniform with
    bound ``1/sqrt(fan_in)``; fan-in 1 for the time maps). ``zero_init_last`` zeroes the last
    layer's ``W, b, d`` so that f = 0 at the start, as RNODE does (Finlay et al. 2020).
    The toy default 2-64-64-64-2 has 9,224 parameters, FFJORD's count.
    """

    def __init__(
        self,
        dim: int,
        hidden: tuple[int, ...] = (64, 64, 64),
        activation: Activation = ACTIVATIONS["tanh"],
        zero_init_last: bool = False,
    ) -> None:
        super().__init__(dim)
        sizes = (dim, *hidden, dim)
        self.widths = sizes[1:]
        self.activation = activation
        # weights[l] is W_l transposed, shape [in, out], so a layer is one addmm.
        self.weights = nn.ParameterList(
            _uniform(fan_in, out, bound=1 / math.sqrt(fan_in))
            for fan_in, out in itertools.pairwise(sizes)
        )
        total = sum(self.widths)
        self.bias = nn.Parameter(
            torch.cat(
                [
                    torch.empty(o).uniform_(-1, 1) / math.sqrt(i)
                    for i, o in zip(sizes[:-1], self.widths, strict=True)
                ]
            )
        )
        self.gate_weight, self.gate_bias, self.time_weight = (
            _uniform(total, bound=1.0) for _ in range(3)
        )
        if zero_init_last:
            with torch.no_grad():
                self.weights[-1].zero_()
                self.bias[-dim:].zero_()
                self.time_weight[-dim:].zero_()

    def _modulation(self, t: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Per layer: the gate ``g = sigmoid(a t + c)`` and the shift ``beta = b g + d t``."""
        gates = torch.sigmoid(torch.addcmul(self.gate_bias, self.gate_weight, t))
        shifts = torch.addcmul(self.time_weight * t, self.bias, gates)
        return gates.split(self.widths), shifts.split(self.widths)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        gates, shifts = self._modulation(t)
        weights = list(self.weights)  # (slicing a ParameterList builds a new module: slow)
        h = torch.addmm(shifts[0], z, weights[0] * gates[0])
        for weight, gate, shift in zip(weights[1:], gates[1:], shifts[1:], strict=True):
            h = torch.addmm(shift, self.activation.value(h), weight * gate)
        return h

    def forward_with_tangents(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        gates, shifts = self._modulation(t)
        weights = list(self.weights)
        gated = weights[0] * gates[0]
        h = torch.addmm(shifts[0], z, gated)
        # dh/dz of the first layer is W_g itself for every sample: [D, 1, H], broadcast on B.
        tangents = gated.unsqueeze(1)
        for weight, gate, shift in zip(weights[1:], gates[1:], shifts[1:], strict=True):
            h, tangents = self.activation.value_and_tangents(h, tangents)
            gated = weight * gate
            h = torch.addmm(shift, h, gated)
            tangents = tangents @ gated
        return h, tangents.expand(-1, z.shape[0], -1)


class PlanarHyperDynamics(Dynamics):
    """Chen et al. (2018)'s CNF (Sec. 4: M hidden units, time dependence and gating):

        f(t, z) = sum_{m=1..M} sigmoid(g_m(t)) u_m(t) tanh(w_m(t) . z + b_m(t)),

    a sum of M planar-flow units whose parameters ``(w, u, b, g)`` are produced from t by a
    hypernetwork (an MLP on the scalar t, ``tanh`` between layers). The Jacobian is
    ``sum_m sigmoid(g_m) (1 - tanh^2(.)) u_m w_m^T``, so the exact trace is closed form:

        tr(df/dz) = sum_m sigmoid(g_m) (u_m . w_m) (1 - tanh^2(w_m . z + b_m)).

    Below, u already includes its gate. ``zero_init_last`` zeroes the hypernetwork's output
    layer (then u = 0 and f = 0 at the start).
    """

    def __init__(
        self,
        dim: int,
        units: int = 64,
        hidden: tuple[int, ...] = (32, 32),
        zero_init_last: bool = False,
    ) -> None:
        super().__init__(dim)
        self.units = units
        sizes = (1, *hidden, units * (2 * dim + 2))
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in itertools.pairwise(sizes))
        if zero_init_last:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)

    def _units_at(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``w`` [M, D], gated ``u`` [M, D] and ``b`` [M] at time t."""
        h = t.reshape(1, 1)
        *hidden, last = self.layers  # (slicing a ModuleList builds a new module: slow)
        for layer in hidden:
            h = torch.tanh(layer(h))
        d = self.dim
        params = last(h).view(self.units, 2 * d + 2)
        w, u, b, g = params.split((d, d, 1, 1), dim=1)
        return w, u * torch.sigmoid(g), b.squeeze(1)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        w, u, b = self._units_at(t)
        return torch.tanh(torch.addmm(b, z, w.t())) @ u

    def forward_with_tangents(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        w, u, b = self._units_at(t)
        a = torch.tanh(torch.addmm(b, z, w.t()))
        # tangents[j, b, i] = sum_m w[m, j] (1 - a[b, m]^2) u[m, i]
        tangents = torch.ops.aten.tanh_backward(w.t().unsqueeze(1), a) @ u
        return a @ u, tangents

    def forward_with_trace(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        w, u, b = self._units_at(t)
        a = torch.tanh(torch.addmm(b, z, w.t()))
        return a @ u, (1 - a * a) @ (u * w).sum(1)


class LinearDynamics(Dynamics):
    """The affine field ``f(t, z) = A z + c``: its flow is known in closed form,
    ``z(t) = e^{tA} z(0) + A^-1 (e^{tA} - I) c``, and its Jacobian is A everywhere, so it is the
    reference case of the analytic checks and tests (trace t tr(A), Jacobian term ||A||_F^2)."""

    def __init__(self, matrix: Tensor, shift: Tensor | None = None) -> None:
        super().__init__(matrix.shape[0])
        self.matrix = nn.Parameter(matrix.clone())
        self.shift = nn.Parameter(torch.zeros_like(matrix[0]) if shift is None else shift.clone())

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return z @ self.matrix.T + self.shift

    def forward_with_tangents(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        tangents = self.matrix.T.unsqueeze(1).expand(-1, z.shape[0], -1)
        return self(t, z), tangents
