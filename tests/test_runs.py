"""The public entry point: a trained run loaded from its folder, used like a distribution."""

from __future__ import annotations

import pytest
import torch
from test_train import tiny

import replication
from replication import train
from replication.datasets import load as load_dataset
from replication.typed import ConfigError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    train.run(tiny(iterations=20, eval_every=10), folder, progress=False)
    return folder


def test_load_run_rescores_the_run_and_samples(run_dir):
    run = replication.load_run(run_dir)
    assert run.config.model.method == "realnvp" and run.metrics["status"] == "ok"
    x = run.sample(500, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 2) and not x.requires_grad
    log_prob = run.log_prob(x)
    assert log_prob.shape == (500,) and torch.isfinite(log_prob).all()
    # The reported best validation NLL comes from these weights: same data, same number.
    data = load_dataset(run.config.data, run.config.seed)
    with torch.no_grad():
        val = torch.cat([run.log_prob(batch) for batch in data.eval_batches("val", 1000)])
    assert -val.mean().item() == pytest.approx(run.metrics["best_val_nll"], rel=1e-6)


def test_rsample_is_differentiable(run_dir):
    run = replication.load_run(run_dir)
    samples = run.rsample(64, generator=torch.Generator().manual_seed(1))
    samples.square().sum().backward()
    assert all(p.grad is not None for p in run.flow.parameters() if p.requires_grad)
    again = run.sample(64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(samples.detach(), again)


def test_a_folder_without_weights_is_named(tmp_path):
    with pytest.raises(ConfigError, match="weights not found"):
        replication.load_run(tmp_path)
