"""Flow matching (``fm``): its field at per-sample times, its objective, and its exact likelihood.

The identities every method meets (inverse round trip, log-det against the autograd Jacobian,
gradients, save and load) are tested for ``fm`` with every other registered method
(tests/test_flows_interface.py, tests/test_image_flows.py); these tests cover what is its own.
"""

from __future__ import annotations

import math

import torch

from replication.flows import build
from replication.flows.continuous import ContinuousFlow
from replication.flows.dynamics import Dynamics
from replication.flows.matching import ConditionalFlowMatching


def _block(flow) -> ContinuousFlow:
    return next(m for m in flow.modules() if isinstance(m, ContinuousFlow))


def test_field_at_per_sample_times_is_the_field_at_each_time():
    vector = build("fm", (2,), hidden=(8, 8)).double()
    image = build("fm", (1, 4, 4), hidden=(4, 4)).double()
    for flow, dim in ((vector, 2), (image, 16)):
        dynamics = _block(flow).dynamics
        z = torch.randn(5, dim, dtype=torch.float64)
        t = torch.rand(5, dtype=torch.float64)
        together = dynamics.at_times(t, z)
        one_by_one = torch.cat([dynamics(t[i], z[i : i + 1]) for i in range(5)])
        torch.testing.assert_close(together, one_by_one)


def test_training_never_solves_and_the_loss_is_the_regression_error():
    """The loss is E||f(s, z_s) - (e - x)||^2 over the OT path: with torch's generator fixed,
    the same draws recomputed by hand give the same number, and no ODE is solved."""
    flow = build("fm", (2,), hidden=(8, 8)).double()
    x = torch.randn(64, 2, dtype=torch.float64)
    torch.manual_seed(0)
    loss, stats = flow.loss(x)
    assert flow.evaluations() == 0 and stats["nfe_forward"] == 0
    torch.manual_seed(0)
    noise = torch.randn_like(x)
    s = torch.rand(64, 1, dtype=torch.float64)
    z = (1 - s) * x + s * noise
    velocity = _block(flow).dynamics.at_times(s.squeeze(1), z)
    expected = (velocity - (noise - x)).square().sum(1).mean()
    torch.testing.assert_close(loss, expected)
    assert flow.objective.name == "conditional flow matching (OT path)"


def test_the_true_marginal_field_of_gaussian_data_has_zero_expected_gradient():
    """For data N(0, c^2 I) the marginal field of the path is linear, f(s, z) = k(s) z with
    k(s) = (s - (1 - s) c^2) / ((1 - s)^2 c^2 + s^2): the regression's minimiser. So a field
    a(s) z has zero expected loss gradient at a = k, and a clearly non-zero one elsewhere."""
    c = 0.5
    torch.manual_seed(1)
    x = c * torch.randn(200_000, 1, dtype=torch.float64)

    class Scaled(torch.nn.Module):
        def __init__(self, offset: float) -> None:
            super().__init__()
            self.offset = torch.nn.Parameter(torch.tensor(offset, dtype=torch.float64))

        def at_times(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            k = (t - (1 - t) * c**2) / ((1 - t) ** 2 * c**2 + t**2)
            return (k + self.offset).unsqueeze(1) * z

    gradients = []
    for offset in (0.0, 0.3):
        block = _block(build("fm", (1,), hidden=(2,)).double())
        block.dynamics = Scaled(offset)  # the objective reads the block's field
        flow = build("fm", (1,), hidden=(2,)).double()
        flow.transform = block
        loss, _ = ConditionalFlowMatching()(flow, x)
        (gradient,) = torch.autograd.grad(loss, [block.dynamics.offset])
        gradients.append(gradient.item())
    assert abs(gradients[0]) < 0.01 and abs(gradients[1]) > 0.1, gradients


def test_exact_likelihood_of_the_flow_matched_gaussian_field():
    """Integrating that marginal field maps N(0, c^2) data to N(0, 1) exactly, so the flow's
    log-likelihood is the data's: log N(x; 0, c^2), computed through the ODE block."""
    c = 0.5

    class Marginal(Dynamics):
        def rate(self, t: torch.Tensor) -> torch.Tensor:
            return (t - (1 - t) * c**2) / ((1 - t) ** 2 * c**2 + t**2)

        def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return self.rate(t) * z

        def forward_with_tangents(self, t: torch.Tensor, z: torch.Tensor):
            eye = torch.eye(self.dim, dtype=z.dtype).unsqueeze(1).expand(-1, z.shape[0], -1)
            return self(t, z), self.rate(t) * eye

    flow = build("fm", (1,), hidden=(2,), eval_solver={"atol": 1e-9, "rtol": 1e-9}).double()
    flow.transform.dynamics = Marginal(1)
    x = c * torch.randn(50, 1, dtype=torch.float64)
    expected = -0.5 * (x.squeeze(1) / c) ** 2 - math.log(c) - 0.5 * math.log(2 * math.pi)
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-6, rtol=1e-6)
