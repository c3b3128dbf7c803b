"""Flow matching (``fm``): its field at per-sample times, its objective, and its exact likelihood.

The identities every method meets (inverse round trip, log-det against the autograd Jacobian,
gradients, save and load) are tested for ``fm`` with every other registered method
(tests/test_flows_interface.py, tests/test_image_flows.py); these tests cover what is its own.
"""

from __future__ import annotations

import torch

from replication.checks import matching
from replication.flows import build
from replication.flows.continuous import ContinuousFlow


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


def test_the_closed_form_checks_of_flow_matching_pass():
    """Gaussian data: the objective's gradient vanishes at the path's marginal field (and is
    0.6 (c^2 + 1) / 3 beside it), and that field's ODE gives the data's exact log-density
    (replication/checks/matching.py, also in the report's analytic checks)."""
    checks = matching.flow_matching()
    assert [check.name.split("/")[1] for check in checks] == [
        "gradient_at_marginal_field", "gradient_beside_it", "exact_likelihood",
    ]  # fmt: skip
    assert all(check.passed for check in checks), checks


def test_a_wrong_field_fails_the_likelihood_check():
    """The check can fail: the field moved off the marginal one no longer carries the data
    onto the base, and the log-density is off by far more than the tolerance."""
    flow = matching._flow_with(matching.MarginalField(2, offset=0.1), {"atol": 1e-9, "rtol": 1e-9})
    x = 0.5 * torch.randn(8, 2, dtype=torch.float64)
    exact = torch.distributions.Normal(0.0, 0.5).log_prob(x).sum(1)
    with torch.no_grad():
        assert (flow.log_prob(x) - exact).abs().max() > 1e-3
