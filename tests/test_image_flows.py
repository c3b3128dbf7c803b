"""The image architectures of all six methods, and the bits/dim identities they rest on.

Tiny images (1x4x4, D = 16), tiny widths, float64. The continuous methods are built here with
the exact trace for training and evaluation (``divergence = eval_divergence = "exact"``): a
Hutchinson log-determinant is random, so identities that must hold sample by sample (log-det
equals slogdet of the Jacobian, eval() equals train(), save/load) are checked on the exact
trace, and the Hutchinson estimate is checked separately to average to it.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from PIL import Image
from torch import Tensor

from replication import config
from replication.evaluate import bits_per_dim
from replication.flows import build, methods, recipe
from replication.flows.base import BaseDistribution, Chain, Flow, StandardLogistic
from replication.flows.continuous import ContinuousFlow, ExactTrace, SolverOptions
from replication.flows.images.layers import LogitTransform, Squeeze
from replication.flows.images.multiscale import MultiScale
from replication.images import save_sample_grid

F64 = torch.float64
SHAPE = (1, 4, 4)
SOLVER = {"method": "dopri5", "atol": 1e-7, "rtol": 1e-7}
# Every method with an image variant, at the tiny size its registry entry states.
METHODS = methods("image")
TINY = {method: recipe(method, SHAPE).tiny for method in METHODS}


def images(n: int, seed: int = 0, device: torch.device | str = "cpu") -> Tensor:
    """Dequantized-looking images in [0, 1), the same on every device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, dtype=F64, generator=generator).to(device)


def make(
    method: str, perturb: float = 0.0, device: torch.device | str = "cpu", **options: object
) -> Flow:
    """A float64 flow on ``device`` after data-dependent initialisation, optionally with
    perturbed weights (zero-initialised layers would otherwise hide parameters that never get a
    gradient)."""
    flow = build(method, SHAPE, **{**TINY[method], **options}).double().to(device).train()
    with torch.no_grad():
        flow.log_prob(images(16, seed=1, device=device))
        generator = torch.Generator().manual_seed(2)
        for parameter in flow.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=F64)
            parameter.add_(perturb * noise.to(device))
    return flow


def jacobian(transform: torch.nn.Module, x: Tensor) -> Tensor:
    """d z / d x of one image as a [D, D] matrix: the image repeated D times in one batch,
    one backward pass with the identity as output gradient (rows of J, one per copy). Every
    copy follows the same solver steps as the image alone."""
    dim = x.numel()
    copies = x.reshape(1, -1).repeat(dim, 1).requires_grad_(True)
    z, _ = transform(copies.reshape(dim, *x.shape))
    (rows,) = torch.autograd.grad(z.reshape(dim, dim).diagonal().sum(), copies)
    return rows


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.device
def test_log_prob_and_latent_shapes(method, device):
    flow = make(method, device=device).eval()
    x = images(5, device=device)
    with torch.no_grad():
        z, _ = flow.transform(x)
        assert flow.log_prob(x).shape == (5,) and z.shape == (5, 16)
        assert torch.isfinite(flow.log_prob(x)).all()


@pytest.mark.device
def test_gradients_reach_every_parameter(method, device):
    flow = make(method, perturb=0.1, device=device)
    log_prob, penalty = flow.log_prob_with_penalty(images(8, device=device))
    (-log_prob.mean() + penalty.weighted.mean()).backward()
    missing = [name for name, p in flow.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.device
def test_inverse_of_forward_is_identity(method, device):
    flow = make(method, perturb=0.1, device=device).eval()
    x = images(6, device=device)
    with torch.no_grad():
        z, logdet = flow.transform(x)
        back, inverse_logdet = flow.transform.inverse(z)
    torch.testing.assert_close(back, x, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(inverse_logdet, -logdet, atol=1e-6, rtol=1e-6)


@pytest.mark.device
def test_logdet_matches_autograd_jacobian(method, device):
    flow = make(method, perturb=0.1, device=device).eval()
    x = images(1, seed=3, device=device)[0]
    sign, expected = torch.linalg.slogdet(jacobian(flow.transform, x))
    _, logdet = flow.transform(x.unsqueeze(0))
    assert sign != 0
    torch.testing.assert_close(logdet[0], expected, atol=1e-5, rtol=1e-6)


@pytest.mark.device
def test_eval_and_train_agree_after_initialisation(method, device):
    flow = make(method, perturb=0.1, device=device)
    x = images(6, device=device)
    with torch.no_grad():
        in_train = flow.train().log_prob(x)
        in_eval = flow.eval().log_prob(x)
    torch.testing.assert_close(in_train, in_eval, atol=1e-6, rtol=1e-6)


@pytest.mark.device
def test_save_and_load_preserve_log_prob(method, device):
    flow = make(method, perturb=0.1, device=device).eval()
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    fresh = build(method, SHAPE, **TINY[method]).double().to(device).eval()
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    x = images(6, device=device)
    with torch.no_grad():
        torch.testing.assert_close(fresh.log_prob(x), flow.log_prob(x))


@pytest.mark.device
@pytest.mark.parametrize("method", ["ffjord", "rnode"])
def test_hutchinson_logdet_averages_to_the_exact_one(method, device):
    """The default (Hutchinson) build, with the exact build's weights: over 400 probes (one
    per copy of the image) the mean log-det is within 4 standard errors of the exact one."""
    hutchinson = build(method, SHAPE, **{**TINY[method], "divergence": "hutchinson",
                                         "eval_divergence": "hutchinson"})  # fmt: skip
    hutchinson = hutchinson.double().to(device)
    exact = make(method, perturb=0.1, device=device).eval()
    hutchinson.load_state_dict(exact.state_dict())
    x = images(1, seed=4, device=device)
    with torch.no_grad():
        _, target = exact.transform(x)
        _, estimates = hutchinson.eval().transform(x.repeat(400, 1, 1, 1))
    error = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - target[0]) < 4 * error
    assert estimates.std() > 0  # it really is a random estimate


@pytest.mark.device
@pytest.mark.parametrize("method", ["ffjord", "rnode"])
def test_adjoint_training_with_hutchinson_matches_direct_backprop(method, device):
    """Several Hutchinson blocks in a row under the adjoint (the paper configs' setting): the
    same probes (same seed) give the same gradients as backpropagating through the solver."""
    gradients = []
    for adjoint in (False, True):
        solver = {**SOLVER, "adjoint": adjoint}
        torch.manual_seed(0)  # the same initial weights
        flow = make(
            method, perturb=0.1, device=device, divergence="hutchinson", train_solver=solver
        )
        torch.manual_seed(7)
        with flow.solving("train"):
            log_prob, penalty = flow.log_prob_with_penalty(images(4, device=device))
            (-log_prob.mean() + penalty.weighted.mean()).backward()
        gradients.append(torch.cat([p.grad.flatten() for p in flow.parameters()]))
    torch.testing.assert_close(gradients[1], gradients[0], atol=1e-5, rtol=1e-4)


# Architecture facts of the paper configurations.


def _blocks(flow: Flow) -> list[ContinuousFlow]:
    return [m for m in flow.modules() if isinstance(m, ContinuousFlow)]


def test_odenvp_follows_ffjords_multiscale_mnist_model():
    ffjord, rnode = build("ffjord", (1, 28, 28)), build("rnode", (1, 28, 28))
    # 800,636 convolution weights as in FFJORD; ffjord adds one learned end time per block.
    assert sum(p.numel() for p in rnode.parameters()) == 800_636
    assert sum(p.numel() for p in ffjord.parameters()) == 800_636 + 10
    assert [b.dynamics.dim for b in _blocks(ffjord)] == [784] * 4 + [392] * 4 + [196] * 2
    multiscale = ffjord.transform.steps[1]
    assert isinstance(multiscale, MultiScale)
    assert multiscale.shapes == [(4, 14, 14), (8, 7, 7), (4, 7, 7)]
    assert multiscale.parts == [(2, 14, 14), (4, 7, 7), (4, 7, 7)]


def test_continuous_defaults_follow_the_references():
    ffjord, rnode, cnf = (build(m, (1, 28, 28)) for m in ("ffjord", "rnode", "cnf"))
    alphas = {m: build(m, (1, 28, 28)).transform.steps[0].alpha for m in ("ffjord", "rnode")}
    assert alphas == {"ffjord": 1e-6, "rnode": 1e-5}
    assert build("realnvp", (1, 28, 28)).transform.steps[0].alpha == 0.05
    first = _blocks(rnode)[0]
    assert first.phases["train"].solver == SolverOptions("rk4", step_size=0.25)
    assert first.phases["evaluate"].solver == SolverOptions("dopri5", atol=1e-5, rtol=1e-5)
    # lambda = 0.01 per unit of bits/dim, i.e. 0.01 D ln 2 per nat of the training loss.
    in_nats = 0.01 * 784 * math.log(2)
    assert (first.kinetic_weight, first.jacobian_weight) == (in_nats, in_nats)
    assert not first.dynamics(torch.tensor(0.0), torch.randn(2, 784)).any()  # zero last layer
    assert isinstance(_blocks(ffjord)[0].end_time.log_value, torch.nn.Parameter)
    assert all(isinstance(p.divergence, ExactTrace) for p in _blocks(cnf)[0].phases.values())
    assert isinstance(build("nice", (1, 28, 28)).base, StandardLogistic)


def test_image_flows_are_configurable_from_yaml_data():
    parsed = config.parse(
        {
            "model": {"method": "glow", "levels": 2},
            "data": {"name": "mnist", "mnist": {"image_size": 14}},
        }
    )
    assert parsed.data.shape == (1, 14, 14) and parsed.model.options.levels == 2


def test_squeeze_is_a_permutation():
    x = torch.arange(2 * 3 * 4 * 6, dtype=F64).reshape(2, 3, 4, 6)
    y, logdet = Squeeze()(x)
    assert y.shape == (2, 12, 2, 3) and not logdet.any()
    assert torch.equal(y.flatten().sort().values, x.flatten())
    assert torch.equal(Squeeze().inverse(y)[0], x)


# Bits/dim identities.


class UnitUniform(BaseDistribution):
    """The uniform density on [0, 1]^D: log p = 0 inside."""

    def log_prob(self, z: Tensor) -> Tensor:
        inside = ((z >= 0) & (z <= 1)).reshape(len(z), -1).all(1)
        return torch.where(inside, 0.0, -math.inf).to(z.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand(self._noise_shape(n), generator=generator)


def test_uniform_density_scores_exactly_8_bits_per_dim():
    flow = Flow(Chain(), UnitUniform(SHAPE))
    nll = -flow.log_prob(images(100)).mean().item()
    assert bits_per_dim(nll, 16) == 8.0


@pytest.mark.parametrize("alpha", [1e-6, 1e-5, 0.05, 0.3])
def test_logit_logdet_matches_autograd(alpha):
    transform = LogitTransform(alpha)
    x = images(1, seed=5)[0]
    sign, expected = torch.linalg.slogdet(jacobian(transform, x))
    y, logdet = transform(x.unsqueeze(0))
    assert sign > 0
    torch.testing.assert_close(logdet[0], expected)
    torch.testing.assert_close(transform.inverse(y)[0], x.unsqueeze(0))
    torch.testing.assert_close(transform.inverse(y)[1], -logdet)


@pytest.mark.parametrize("alpha", [1e-6, 1e-5, 0.05, 0.3])
def test_logit_then_standard_logistic_scores_8_minus_log2_of_1_minus_2alpha(alpha):
    """With y = logit(s), s = alpha + (1 - 2 alpha) x, the logistic density of y is
    sigmoid(y) (1 - sigmoid(y)) = s (1 - s), and |dy/dx| = (1 - 2 alpha) / (s (1 - s)): their
    product is the constant (1 - 2 alpha) per pixel, whatever x. So log p(x) = D log(1 - 2a)
    and bpd = -(log(1 - 2a) - ln 256) / ln 2 = 8 - log2(1 - 2a)."""
    flow = Flow(LogitTransform(alpha), StandardLogistic(SHAPE))
    log_p = flow.log_prob(images(50))
    torch.testing.assert_close(log_p, torch.full_like(log_p, 16 * math.log1p(-2 * alpha)))
    expected = 8 - math.log2(1 - 2 * alpha)
    assert math.isclose(bits_per_dim(-log_p.mean().item(), 16), expected, rel_tol=1e-12)


def test_nice_reported_log_likelihood_converts_to_its_bits_per_dim():
    """NICE reports a log-likelihood of 1980.50 nats on MNIST for images rescaled to [0, 1]
    (positive: it is a density on [0, 1]^D; on [0, 256)^D it would be 1980.50 - D ln 256 < 0).
    docs/sources.md: bpd = -(LL - D ln 256) / (D ln 2) = 4.356."""
    dims, log_likelihood = 784, 1980.50
    bpd = bits_per_dim(-log_likelihood, dims)
    assert math.isclose(bpd, -(log_likelihood - dims * math.log(256)) / (dims * math.log(2)))
    assert round(bpd, 3) == 4.356 and round(bpd, 2) == 4.36


def test_sample_grid_is_a_png_of_clamped_samples(tmp_path):
    flow = make("glow", perturb=0.1)
    path = tmp_path / "samples" / "grid.png"
    save_sample_grid(flow, path, count=9, generator=torch.Generator().manual_seed(0))
    assert flow.training  # mode restored
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        # 3 x 3 images of 4 x 4 pixels with 2-pixel padding around each.
        assert picture.size == (3 * (4 + 2) + 2, 3 * (4 + 2) + 2)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary left
