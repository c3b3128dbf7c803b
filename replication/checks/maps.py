"""Change of variables from first principles: each flow family configured as a known affine map.

If z ~ N(0, I) and x = A z + b, then x ~ N(b, A A^T) and log|det dz/dx| = -log|det A|. Each
family's own layers are set, weight by weight, to the data-to-latent map z = M x + m with
M = A^-1 and m = -M b (M is upper triangular for the maps used, so couplings can express it):

- additive couplings + diagonal scaling (NICE),
- affine couplings with the soft-clamped scale (RealNVP),
- actnorm + LU-parametrised linear map (Glow),
- an ODE block with a concat-squash field reduced to f(z) = B z + c (FFJORD's family, and the
  solver and exact-trace machinery CNF and RNODE share): its time-1 flow is
  z(1) = e^B x + B^-1 (e^B - I) c, so B = log M and c = (e^B - I)^-1 B m.

The flow's log p(x) at a test point and its log-determinant are compared with the closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from replication.checks.records import Check, close
from replication.flows.augmented import EndTime, ExactTrace
from replication.flows.base import Bijection, Chain, Flow, StandardNormal
from replication.flows.continuous import ContinuousFlow, Integration
from replication.flows.coupling import Shift, SoftClampScaleShift, VectorCoupling
from replication.flows.dynamics import ACTIVATIONS, ConcatSquashMLP
from replication.flows.linear import ActNorm, DiagonalScale, InvertibleLinear
from replication.flows.ode import NFECounter, SolverOptions

F64 = torch.float64
# name: (A, b, what is known)
MAPS: dict[str, tuple[list[list[float]], list[float], str]] = {
    "scale": ([[2.0, 0.0], [0.0, 2.0]], [1.0, 1.0], "x = 2z + 1, z ~ N(0,1): x ~ N(1, 4)"),
    "shear": (
        [[2.0, 1.0], [0.0, 3.0]],
        [0.0, 0.0],
        "x = Az, A = [[2,1],[0,3]]: area scaled by det A = 6, x ~ N(0, AA^T)",
    ),
}
POINT = (0.3, -0.7)
TOLERANCE = 1e-6  # float64 arithmetic; the ODE is solved at atol = rtol = 1e-10


def _set_linear_conditioner(
    coupling: VectorCoupling, slopes: list[float], offsets: list[float]
) -> None:
    """Make a one-input ReLU conditioner output ``slope * u + offset`` exactly:
    ``relu(u) - relu(-u) = u`` through its single hidden layer of two units."""
    first, last = coupling.conditioner[0], coupling.conditioner[-1]
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0], [-1.0]], dtype=F64))
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[s, -s] for s in slopes], dtype=F64))
        last.bias.copy_(torch.tensor(offsets, dtype=F64))


def nice_map(matrix: Tensor, offset: Tensor) -> Bijection:
    """z1 = p (x1 + (q/p) x2 + m1/p), z2 = r (x2 + m2/r): two additive couplings, then scaling."""
    (p, q), (_, r) = matrix.tolist()
    m1, m2 = offset.tolist()
    first = VectorCoupling([1], [0], Shift(), hidden=(2,)).double()
    second = VectorCoupling([0], [1], Shift(), hidden=(2,)).double()
    _set_linear_conditioner(first, [q / p], [m1 / p])
    _set_linear_conditioner(second, [0.0], [m2 / r])
    scale = DiagonalScale((2,)).double()
    with torch.no_grad():
        scale.log_scale.copy_(torch.tensor([math.log(p), math.log(r)], dtype=F64))
    return Chain(first, second, scale)


def realnvp_map(matrix: Tensor, offset: Tensor) -> Bijection:
    """z1 = p x1 + (q x2 + m1), z2 = r x2 + m2: two affine couplings with constant log-scales."""
    (p, q), (_, r) = matrix.tolist()
    m1, m2 = offset.tolist()
    transformer = SoftClampScaleShift()

    def raw(scale: float) -> float:  # the pre-clamp value giving log-scale log(scale)
        return transformer.bound * math.atanh(math.log(scale) / transformer.bound)

    first = VectorCoupling([1], [0], transformer, hidden=(2,)).double()
    second = VectorCoupling([0], [1], SoftClampScaleShift(), hidden=(2,)).double()
    _set_linear_conditioner(first, [0.0, q], [raw(p), m1])
    _set_linear_conditioner(second, [0.0, 0.0], [raw(r), m2])
    return Chain(first, second)


def glow_map(matrix: Tensor, offset: Tensor) -> Bijection:
    """z = W (x + beta) with actnorm's bias beta = M^-1 m and the LU map W = M (P = L = I)."""
    (p, q), (_, r) = matrix.tolist()
    actnorm, linear = ActNorm(2).double(), InvertibleLinear(2).double()
    with torch.no_grad():
        actnorm.bias.copy_(torch.linalg.solve(matrix, offset))
        actnorm.log_scale.zero_()
        actnorm.initialized.fill_(True)
        linear.permutation.copy_(torch.eye(2, dtype=F64))
        linear.sign.fill_(1.0)
        linear.lower.zero_()
        linear.upper.fill_(q)
        linear.log_s.copy_(torch.tensor([math.log(p), math.log(r)], dtype=F64))
    return Chain(actnorm, linear)


def _log_upper_triangular(matrix: Tensor) -> Tensor:
    """The principal logarithm of [[p, q], [0, r]] (p, r > 0), in closed form."""
    (p, q), (_, r) = matrix.tolist()
    lp, lr = math.log(p), math.log(r)
    off = q / p if math.isclose(p, r) else q * (lp - lr) / (p - r)
    return torch.tensor([[lp, off], [0.0, lr]], dtype=F64)


def continuous_map(matrix: Tensor, offset: Tensor) -> Bijection:
    """An ODE block whose concat-squash field is the affine f(z) = B z + c (see module doc)."""
    generator = _log_upper_triangular(matrix)
    shift = torch.linalg.solve(matrix - torch.eye(2, dtype=F64), generator @ offset)
    field = ConcatSquashMLP(2, hidden=(), activation=ACTIVATIONS["tanh"]).double()
    with torch.no_grad():  # gate sigmoid(0 t + 0) = 1/2, so weights and bias are doubled
        field.weights[0].copy_(2 * generator.T)
        field.bias.copy_(2 * shift)
        field.gate_weight.zero_()
        field.gate_bias.zero_()
        field.time_weight.zero_()
    solve = Integration(SolverOptions("dopri5", atol=1e-10, rtol=1e-10), ExactTrace())
    return ContinuousFlow(
        field, EndTime(1.0, learn=False), train=solve, evaluate=solve, counter=NFECounter()
    )


FAMILIES: dict[str, Callable[[Tensor, Tensor], Bijection]] = {
    "nice": nice_map,
    "realnvp": realnvp_map,
    "glow": glow_map,
    "continuous": continuous_map,
}


def check_family(family: str, map_name: str) -> list[Check]:
    """log p(x) at a test point and log|det dz/dx| of ``family`` set to map ``map_name``."""
    a_list, b_list, known = MAPS[map_name]
    a, b = torch.tensor(a_list, dtype=F64), torch.tensor(b_list, dtype=F64)
    inverse = torch.linalg.inv(a)
    transform: nn.Module = FAMILIES[family](inverse, -inverse @ b).double().eval()
    flow = Flow(transform, StandardNormal((2,))).double().eval()
    point = torch.tensor([POINT], dtype=F64)
    gaussian = torch.distributions.MultivariateNormal(b, covariance_matrix=a @ a.T)
    with torch.no_grad():
        _, logdet = flow.transform(point)
        log_prob = flow.log_prob(point)
    name = f"change_of_variables/{map_name}/{family}"
    return [
        close(f"{name}/log_prob", f"{known}; log p at x = {POINT}",
              gaussian.log_prob(point).item(), log_prob.item(), TOLERANCE),
        close(f"{name}/logdet", "log|det dz/dx| = -log|det A|",
              -math.log(abs(torch.linalg.det(a).item())), logdet.item(), TOLERANCE),
    ]  # fmt: skip


def change_of_variables() -> list[Check]:
    """Every family on every map."""
    return [check for f in FAMILIES for m in MAPS for check in check_family(f, m)]
