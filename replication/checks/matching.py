"""Flow matching (``fm``) against its closed form: Gaussian data N(0, c^2 I).

Along the objective's path z_s = (1 - s) x + s e (x the data, e ~ N(0, I)), the velocity
target is u = e - x, and for Gaussian data the marginal field E[u | z_s] is linear,

    f*(s, z) = k(s) z,   k(s) = (s - (1 - s) c^2) / ((1 - s)^2 c^2 + s^2),

the regression's minimiser. So (a) the objective's expected gradient vanishes at f* and not
beside it, and (b) integrating f* carries N(0, c^2) exactly onto N(0, 1) (the path's std goes
from c to 1, d log std / ds = k), so fm's ODE block with f* must give log p(x) = log N(x; 0, c^2).
Both run through the method's own code (its objective, its ODE block and solver).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from replication.checks.records import Check, close
from replication.flows.base import Flow
from replication.flows.continuous import ContinuousFlow
from replication.flows.dynamics import Dynamics
from replication.flows.registry import build

F64 = torch.float64
SCALE = 0.5  # c: the data's standard deviation
Z_CRITICAL = 3.29  # two-sided false-alarm rate 1e-3
CHUNKS, CHUNK = 100, 2000  # the gradient averaged over 100 batches of 2,000 draws


def marginal_rate(s: Tensor, c: float = SCALE) -> Tensor:
    """k(s) of the marginal field f*(s, z) = k(s) z for N(0, c^2) data."""
    return (s - (1 - s) * c**2) / ((1 - s) ** 2 * c**2 + s**2)


class MarginalField(Dynamics):
    """f(s, z) = (k(s) + offset) z: the marginal field of the path, moved by ``offset``."""

    def __init__(self, dim: int, offset: float = 0.0) -> None:
        super().__init__(dim)
        self.offset = nn.Parameter(torch.tensor(offset, dtype=F64))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return (marginal_rate(t) + self.offset) * z

    def at_times(self, t: Tensor, z: Tensor) -> Tensor:
        return (marginal_rate(t) + self.offset).unsqueeze(1) * z

    def forward_with_tangents(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.dim, dtype=z.dtype).unsqueeze(1).expand(-1, z.shape[0], -1)
        return self(t, z), (marginal_rate(t) + self.offset) * eye


def _flow_with(field: MarginalField, solver: dict | None = None) -> Flow:
    """An fm flow whose ODE block integrates ``field`` (its network is replaced)."""
    flow = build("fm", (field.dim,), hidden=(2,), eval_solver=solver or {}).double()
    block = next(m for m in flow.modules() if isinstance(m, ContinuousFlow))
    block.dynamics = field
    return flow


def _gradients(offset: float) -> Tensor:
    """The objective's gradient in ``offset`` on each of CHUNKS batches of N(0, c^2) data."""
    generator = torch.Generator().manual_seed(0)
    field = MarginalField(1, offset)
    flow = _flow_with(field)
    found = []
    for _ in range(CHUNKS):
        x = SCALE * torch.randn(CHUNK, 1, generator=generator, dtype=F64)
        loss, _ = flow.loss(x)
        (gradient,) = torch.autograd.grad(loss, [field.offset])
        found.append(gradient)
    return torch.stack(found)


def flow_matching() -> list[Check]:
    """The objective's minimiser and the exact likelihood of fm on Gaussian data."""
    torch.manual_seed(0)  # the objective's own draws (times and noise)
    at_minimum, beside = _gradients(0.0), _gradients(0.3)
    error = (at_minimum.std() / math.sqrt(CHUNKS)).item()
    flow = _flow_with(MarginalField(2), {"method": "dopri5", "atol": 1e-10, "rtol": 1e-10})
    x = SCALE * torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    exact = torch.distributions.Normal(0.0, SCALE).log_prob(x).sum(1)
    with torch.no_grad():
        deviation = (flow.log_prob(x) - exact).abs().max().item()
    known = f"data N(0, {SCALE}^2): marginal field k(s) z of the OT path"
    return [
        close("flow_matching/gradient_at_marginal_field", f"{known} minimises the objective: "
              f"mean gradient over {CHUNKS} batches of {CHUNK}", 0.0, at_minimum.mean().item(),
              Z_CRITICAL * error, error, note="false-alarm rate 1e-3"),
        close("flow_matching/gradient_beside_it", "the field moved by 0.3 z: expected "
              "gradient 2 * 0.3 * E[z_s^2] = 0.6 * E[(1-s)^2 c^2 + s^2] = 0.6 (c^2 + 1) / 3",
              0.6 * (SCALE**2 + 1) / 3, beside.mean().item(),
              Z_CRITICAL * (beside.std() / math.sqrt(CHUNKS)).item(),
              (beside.std() / math.sqrt(CHUNKS)).item(), note="false-alarm rate 1e-3"),
        close("flow_matching/exact_likelihood", f"{known} carries it onto N(0, I): log p(x) "
              "through fm's ODE block (dopri5 1e-10) = log N(x; 0, c^2 I), largest deviation",
              0.0, deviation, 1e-6),
    ]  # fmt: skip
