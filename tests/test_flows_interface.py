"""The identities every registered method must satisfy, checked on vector data (D = 2).

Sizes are tiny and arithmetic is float64 so the comparisons can be tight. Continuous methods use
tight solver tolerances here so that solver error does not hide a log-determinant bug. The tests
are device-agnostic: ``python -m replication gpu-check`` runs them on every device at hand.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from replication.flows import build, build_from_options, methods, options, recipe
from replication.flows.base import maximum_likelihood
from replication.typed import ConfigError

pytestmark = pytest.mark.device

# The tiny model of each method, as its registry entry states it.
TINY = {method: recipe(method, (2,)).tiny for method in methods("vector")}


def make(method: str, device: torch.device, perturb: float = 0.0) -> torch.nn.Module:
    """A float64 flow on ``device`` with data-dependent initialisation done and optionally
    perturbed weights (zero-initialised layers would otherwise hide disconnected parameters)."""
    flow = build(method, (2,), **TINY[method]).double().to(device)
    flow.train()
    with torch.no_grad():
        flow.log_prob(torch.randn(64, 2, dtype=torch.float64, device=device) * 2 + 0.5)
        for parameter in flow.parameters():
            parameter.add_(perturb * torch.randn_like(parameter))
    return flow


@pytest.fixture(params=methods("vector"))
def method(request: pytest.FixtureRequest) -> str:
    return request.param


def test_log_prob_shape(method, device):
    flow = make(method, device)
    assert flow.log_prob(torch.randn(5, 2, dtype=torch.float64, device=device)).shape == (5,)


def test_gradients_reach_every_parameter(method, device):
    flow = make(method, device, perturb=0.1)
    flow.log_prob(torch.randn(16, 2, dtype=torch.float64, device=device)).mean().backward()
    missing = [name for name, p in flow.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_loss_is_the_nll_plus_weighted_penalties_and_counts_its_evaluations(method, device):
    """For maximum-likelihood methods; another objective (flow matching) reports its own value
    as ``loss`` and the evaluations it spent (none: it never solves its ODE in training)."""
    flow = make(method, device, perturb=0.05)
    x = torch.randn(16, 2, dtype=torch.float64, device=device)
    before = flow.evaluations()
    loss, stats = flow.loss(x)
    spent = flow.evaluations() - before
    if flow.objective is not maximum_likelihood:
        assert torch.equal(stats["loss"], loss.detach()) and loss.requires_grad
        assert stats["nfe_forward"] == spent == 0
        return
    log_prob, penalty = flow.log_prob_with_penalty(x)
    assert torch.allclose(loss, -log_prob.mean() + penalty.weighted.mean())
    assert torch.allclose(stats["loss"], -log_prob.mean()) and not stats["loss"].requires_grad
    assert stats["nfe_forward"] == spent and (spent > 0) == flow.counts_evaluations()
    assert torch.allclose(stats["kinetic"], penalty.kinetic.mean())
    assert torch.allclose(stats["jacobian"], penalty.jacobian.mean())


def test_inverse_of_forward_is_identity(method, device):
    flow = make(method, device, perturb=0.1).eval()
    x = torch.randn(8, 2, dtype=torch.float64, device=device)
    with torch.no_grad():
        z, logdet = flow.transform(x)
        back, inverse_logdet = flow.transform.inverse(z)
    torch.testing.assert_close(back, x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(inverse_logdet, -logdet, atol=1e-6, rtol=1e-6)


def test_logdet_matches_autograd_jacobian(method, device):
    flow = make(method, device, perturb=0.1).eval()
    points = torch.randn(3, 2, dtype=torch.float64, device=device)
    _, logdet = flow.transform(points)
    for point, expected in zip(points, logdet, strict=True):
        jacobian = torch.autograd.functional.jacobian(
            lambda p: flow.transform(p.unsqueeze(0))[0].squeeze(0), point
        )
        sign, log_abs = torch.linalg.slogdet(jacobian)
        assert sign != 0
        torch.testing.assert_close(expected, log_abs, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("perturb", [0.0, 0.05])
def test_density_integrates_to_one(method, perturb, device):
    flow = make(method, device, perturb=perturb).eval()
    half_width, n = 12.0, 300
    axis = torch.linspace(-half_width, half_width, n, dtype=torch.float64, device=device)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = torch.cat([flow.log_prob(chunk) for chunk in grid.split(10_000)]).exp()
    cell = (axis[1] - axis[0]) ** 2
    assert math.isclose(density.sum().item() * cell, 1.0, abs_tol=0.01)


def test_eval_and_train_agree_after_initialisation(method, device):
    flow = make(method, device, perturb=0.1)
    x = torch.randn(8, 2, dtype=torch.float64, device=device)
    with torch.no_grad():
        in_train = flow.train().log_prob(x)
        in_eval = flow.eval().log_prob(x)
    torch.testing.assert_close(in_train, in_eval, atol=1e-6, rtol=1e-6)


def test_save_and_load_preserve_log_prob(method, device):
    flow = make(method, device, perturb=0.1).eval()
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    fresh = build(method, (2,), **TINY[method]).double().to(device).eval()
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    x = torch.randn(8, 2, dtype=torch.float64, device=device)
    with torch.no_grad():
        torch.testing.assert_close(fresh.log_prob(x), flow.log_prob(x))


def test_samples_have_consistent_log_prob(method, device):
    """Samples drawn from the model score like the model says: the mean log_prob of its own
    samples estimates minus its entropy, which must match a grid estimate of the same."""
    flow = make(method, device, perturb=0.05).eval()
    samples = flow.sample(4000, generator=torch.Generator(device).manual_seed(1))
    assert samples.shape == (4000, 2) and torch.isfinite(samples).all()
    with torch.no_grad():
        mc_entropy = -flow.log_prob(samples).mean().item()
        axis = torch.linspace(-12, 12, 300, dtype=torch.float64, device=device)
        grid = torch.cartesian_prod(axis, axis)
        log_density = torch.cat([flow.log_prob(chunk) for chunk in grid.split(10_000)])
    cell = ((axis[1] - axis[0]) ** 2).item()
    grid_entropy = -(log_density.exp() * log_density).sum().item() * cell
    assert abs(mc_entropy - grid_entropy) < 0.1


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="valid choices: .*realnvp"):
        build("maf", (2,))


def test_builder_works_with_defaults_and_rejects_unknown_options(method):
    flow = build(method, (2,))
    assert flow.log_prob(torch.randn(3, 2)).shape == (3,)
    with pytest.raises(ConfigError, match="depth"):
        build(method, (2,), depth=3)


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="depth"):
        build("realnvp", (2,), depth=3)


def test_a_flow_is_built_from_its_parsed_options_as_from_keywords(method):
    """A config's options are parsed once; building from them gives the keyword-built flow."""
    parsed = options(method, (2,), dict(TINY[method]))
    torch.manual_seed(3)
    built = build_from_options(method, (2,), parsed)
    torch.manual_seed(3)
    expected = build(method, (2,), **TINY[method])
    assert all(
        torch.equal(a, b)
        for a, b in zip(built.state_dict().values(), expected.state_dict().values(), strict=True)
    )
    with pytest.raises(TypeError, match="takes"):
        build_from_options(method, (2,), dict(TINY[method]))
