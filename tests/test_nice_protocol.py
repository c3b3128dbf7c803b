"""NICE's protocol (Dinh et al. 2014): no logit, logistic prior, RMSProp with a momentum ramp,
exponential learning-rate decay with a floor, uniform initialisation; and the configs that
existed before it keep their meaning and digests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from replication import config, optim, train
from replication.__main__ import EXIT_CONFIG, main
from replication.evaluate import bits_per_dim
from replication.flows import build
from replication.flows.base import StandardLogistic
from replication.flows.images.layers import LogitTransform
from replication.typed import ConfigError
from tests.test_train import tiny, without_timings

ROOT = Path(__file__).parent.parent
SHAPE = (1, 4, 4)
DIMS = 16


def nice(**options: object) -> torch.nn.Module:
    return build("nice", SHAPE, couplings=2, hidden=(8,), **options).double()


def test_standard_logistic_density_integrates_to_one_and_matches_its_closed_form():
    """p(z) = e^-z / (1 + e^-z)^2 = sigmoid(z) sigmoid(-z); its integral over R is 1."""
    prior = StandardLogistic((1,)).double()
    z = torch.linspace(-40, 40, 400_001, dtype=torch.float64)
    density = prior.log_prob(z[:, None]).exp()
    assert torch.trapezoid(density, z).item() == pytest.approx(1.0, abs=1e-9)
    closed = torch.sigmoid(z) * torch.sigmoid(-z)
    torch.testing.assert_close(density, closed, rtol=1e-7, atol=1e-30)  # tails: 1 - tiny


def test_without_logit_the_density_is_the_logistic_prior_of_the_pixels():
    """Zero-initialised couplings (uniform in +-0 is not allowed, so the weights are zeroed
    afterwards) and a unit scaling make NICE the identity: log p(x) = sum log logistic(x_i)
    on [0, 1]^D, with no preprocessing term, and bits/dim follow from it unchanged."""
    flow = nice(logit_alpha=None)
    assert not any(isinstance(m, LogitTransform) for m in flow.modules())
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.zero_()
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    expected = (torch.sigmoid(x) * torch.sigmoid(-x)).log().flatten(1).sum(1)
    torch.testing.assert_close(flow.log_prob(x), expected)
    nll = -expected.mean().item()
    assert bits_per_dim(nll, DIMS) == pytest.approx((nll / DIMS + math.log(256)) / math.log(2))


def test_without_logit_the_flow_still_inverts_and_its_logdet_is_the_jacobians():
    flow = nice(logit_alpha=None, init_uniform=0.5)
    x = torch.rand(3, *SHAPE, dtype=torch.float64)
    z, logdet = flow.transform(x)
    back, _ = flow.transform.inverse(z)
    torch.testing.assert_close(back, x)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow.transform(v)[0], x[:1])
    expected = torch.linalg.slogdet(jacobian.reshape(DIMS, DIMS))[1]
    torch.testing.assert_close(logdet[0], expected)


def test_uniform_initialisation_bounds_every_coupling_weight_and_zeroes_biases():
    flow = nice(init_uniform=0.01)
    linears = [m for m in flow.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.abs().max() <= 0.01 for m in linears)
    assert all(m.weight.abs().max() > 0.005 for m in linears)  # drawn, not zeroed
    assert all(torch.all(m.bias == 0) for m in linears)


def test_exponential_decay_divides_by_the_factor_and_stops_at_the_floor():
    train_config = config.TrainConfig(
        iterations=10_000, lr=1e-3, lr_decay="exponential", lr_decay_factor=1.0005, lr_floor=1e-4
    )
    rate = [1e-3 * optim.learning_rate_factor(train_config, k) for k in (0, 1, 100, 9000)]
    assert rate[0] == pytest.approx(1e-3)
    assert rate[1] == pytest.approx(1e-3 / 1.0005)
    assert rate[2] == pytest.approx(1e-3 / 1.0005**100)
    assert rate[3] == pytest.approx(1e-4)  # 1e-3 / 1.0005^9000 = 1.1e-5 < floor


def test_torch_scheduler_applies_the_decay_to_the_optimiser():
    train_config = config.TrainConfig(lr=1e-3, lr_decay="exponential", lr_decay_factor=2.0)
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = optim.make_optimizer([parameter], train_config, torch.device("cpu"))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: optim.learning_rate_factor(train_config, k)
    )
    rates = []
    for _ in range(3):
        rates.append(optimizer.param_groups[0]["lr"])
        parameter.sum().backward()
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_momentum_ramps_linearly_and_rmsprop_takes_it():
    train_config = config.TrainConfig(optimizer="rmsprop", momentum=0.5, momentum_ramp=(10, 20))
    values = [optim.momentum_at(train_config, k) for k in (0, 10, 15, 20, 99)]
    assert values == pytest.approx([0, 0, 0.25, 0.5, 0.5])
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = optim.make_optimizer([parameter], train_config, torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.RMSprop)
    for k in range(25):
        optim.ramp_momentum(optimizer, train_config, k)
        optimizer.zero_grad()
        (parameter**2).sum().backward()
        optimizer.step()
    assert optimizer.param_groups[0]["momentum"] == 0.5
    assert "momentum_buffer" in optimizer.state[parameter]


def test_nice_protocol_run_is_reproducible_and_resumes(tmp_path, monkeypatch):
    """RMSProp with a momentum ramp crossing the checkpoint at iteration 100, exponential
    decay: the same numbers twice, and the same numbers after an interruption there."""
    protocol = {
        "optimizer": "rmsprop", "momentum": 0.5, "momentum_ramp": [60, 120],
        "lr_decay": "exponential", "lr_decay_factor": 1.001, "lr_floor": 1e-4,
    }  # fmt: skip
    run = tiny("nice", **protocol)
    first = train.run(run, tmp_path / "a", progress=False)
    second = train.run(run, tmp_path / "b", progress=False)
    assert first["status"] == "ok" and first["best_val_nll"] < first["val_curve"][0]["val_nll"]
    assert without_timings(first) == without_timings(second)

    original, calls = train.save_checkpoint, {"n": 0}

    def save_then_stop(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # the checkpoint at iteration 100
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train.run(run, tmp_path / "c", progress=False)
    monkeypatch.setattr(train, "save_checkpoint", original)
    resumed = train.run(run, tmp_path / "c", progress=False)
    assert without_timings(resumed) == without_timings(first)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=.nan", r"train.lr must be a finite number > 0, got nan"),
        ("train.lr_floor=.inf", r"train.lr_floor must be a finite number, got inf"),
        ("train.momentum=1.5", r"train.momentum must lie in \[0, 1\), got 1.5"),
        ("train.optimizer=sgd", r"value for train.optimizer.*adam, adamax, rmsprop"),
        ("train.lr_decay_factor=0.5", r"train.lr_decay_factor must be a finite number >= 1"),
        ("train.momentum_ramp=[5, 2]", r"train.momentum_ramp must be \[start, end\]"),
        (
            "model.logit_alpha=0.7",
            r"model.logit_alpha must be a finite number in \(0, 0.5\) or null",
        ),
        ("model.init_uniform=-1", r"model.init_uniform must be a positive number or null"),
    ],
)
def test_bad_protocol_values_exit_2_naming_the_key(override, message, tmp_path, capsys):
    paper = ROOT / "config/experiments/mnist/nice-paper.yaml"
    with pytest.raises(ConfigError, match=message):
        config.load(paper, (override,))
    code = main(["train", "--config", str(paper), "--out", str(tmp_path), "--set", override])
    assert code == EXIT_CONFIG and not any(tmp_path.iterdir())
    assert "nice-paper.yaml" in capsys.readouterr().err


def test_momentum_needs_rmsprop():
    with pytest.raises(ConfigError, match="train.momentum applies to train.optimizer rmsprop"):
        config.parse({"model": {"method": "nice"}, "train": {"momentum": 0.9}})


def test_committed_runs_keep_their_config_digests():
    """The new options at their defaults leave every existing config's digest unchanged: the
    digest each committed run recorded is the one its config gives today."""
    paths = sorted((ROOT / "results" / "default").glob("*/*/seed*/metrics.json"))
    assert paths
    for path in paths:
        metrics = json.loads(path.read_text())
        assert config.parse(metrics["config"]).digest() == metrics["config_digest"], path


def test_protocol_digest_ignores_seed_device_and_threads_only():
    paper = ROOT / "config/experiments/mnist/rnode-paper.yaml"
    reference = config.load(paper).protocol_digest()
    same = config.load(paper, ("seed=1", "device=cpu", "threads=4", "data.mnist.root=/x"))
    assert same.protocol_digest() == reference
    assert config.load(paper, ("train.iterations=29999",)).protocol_digest() != reference
