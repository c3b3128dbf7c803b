"""Training end to end on tiny budgets: it learns, it is reproducible, it resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from replication import config, train
from replication.atomic import save_torch
from replication.flows import Flow, build, methods, recipe
from replication.flows.base import StandardNormal

TIMING = "timing"


def tiny(method: str = "realnvp", **train_options) -> config.ExperimentConfig:
    """The method's tiny test model (its registry entry), 32-32 wide, on a small toy problem."""
    model = {**recipe(method, (2,)).tiny, "hidden": [32, 32]}
    return config.parse(
        {
            "model": {"method": method, **model},
            "data": {"name": "8gaussians", "train_size": 4000, "val_size": 1000, "test_size": 2000},
            "train": {
                "iterations": 200,
                "batch_size": 128,
                "lr": 3e-3,
                "eval_every": 50,
                **train_options,
            },
            "eval": {"batch_size": 1000, "sample_count": 100},
        }
    )


def every_method() -> list:
    """Every vector method; those that solve an ODE (seconds per step at the tiny models' tight
    tolerances) only in the slow run."""
    params = []
    for method in methods("vector"):
        solves = build(method, (2,), **recipe(method, (2,)).tiny).counts_evaluations()
        params.append(pytest.param(method, marks=pytest.mark.slow if solves else ()))
    return params


def without_timings(metrics: dict) -> dict:
    drop = {TIMING, "provenance"}
    return {key: value for key, value in metrics.items() if key not in drop}


@pytest.mark.parametrize("method", every_method())
def test_short_run_lowers_the_nll(tmp_path, method):
    metrics = train.run(tiny(method), tmp_path, progress=False)
    curve = metrics["val_curve"]
    assert metrics["status"] == "ok"
    assert curve[0]["iteration"] == 0 and curve[-1]["iteration"] == 200
    assert metrics["best_val_nll"] < curve[0]["val_nll"] - 0.5
    assert abs(metrics["test_nll"] - metrics["best_val_nll"]) < 0.2
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "model.pt").exists()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_metrics_record_provenance_and_config(tmp_path):
    metrics = json.loads(json.dumps(train.run(tiny(), tmp_path, progress=False)))
    assert metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"] == tiny().to_dict() and metrics["seed"] == 0
    assert set(metrics["provenance"]) >= {"commit", "device", "versions"}
    assert torch.__version__.startswith(metrics["provenance"]["versions"]["torch"])
    assert metrics["params"] > 0 and metrics["test_count"] == 2000
    assert metrics["timing"]["seconds_per_iter"] > 0 and metrics["timing"]["sample_count"] == 100


def test_same_seed_same_metrics(tmp_path):
    first = train.run(tiny(), tmp_path / "a", progress=False)
    second = train.run(tiny(), tmp_path / "b", progress=False)
    assert without_timings(first) == without_timings(second)
    other_seed = train.run(
        config.parse({**tiny().to_dict(), "seed": 1}), tmp_path / "c", progress=False
    )
    assert other_seed["test_nll"] != first["test_nll"]


def interrupt_after_second_checkpoint(
    experiment: config.ExperimentConfig, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run ``experiment`` into ``out`` and stop it right after its second checkpoint is
    written, as a kill would; the caller then reruns it to resume."""
    calls = {"n": 0}
    original = train.save_checkpoint

    def save_then_stop(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train.run(experiment, out, progress=False)
    monkeypatch.setattr(train, "save_checkpoint", original)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    reference = train.run(tiny(), tmp_path / "reference", progress=False)
    interrupt_after_second_checkpoint(tiny(), tmp_path / "resumed", monkeypatch)  # at 100
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = train.run(tiny(), tmp_path / "resumed", progress=False)
    assert without_timings(resumed) == without_timings(reference)


@pytest.mark.slow
def test_flow_matching_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    """fm draws its path times and noise from torch's global generator, which checkpoints
    carry: an interrupted run ends with the same numbers."""
    reference = train.run(tiny("fm"), tmp_path / "reference", progress=False)
    interrupt_after_second_checkpoint(tiny("fm"), tmp_path / "resumed", monkeypatch)
    resumed = train.run(tiny("fm"), tmp_path / "resumed", progress=False)
    assert reference["objective"] == "conditional flow matching (OT path)"
    assert without_timings(resumed) == without_timings(reference)


def test_checkpoint_of_another_config_is_ignored(tmp_path):
    save_torch(tmp_path / "checkpoint.pt", {"digest": "something else"})
    assert train.run(tiny(), tmp_path, progress=False)["iterations"] == 200


def test_non_finite_loss_stops_cleanly_with_best_weights(tmp_path):
    metrics = train.run(tiny(lr=1e6, grad_clip=None), tmp_path, progress=False)
    assert metrics["status"].startswith("diverged: non-finite loss at iteration")
    assert metrics["test_nll"] is not None and (tmp_path / "model.pt").exists()
    stop = metrics["convergence"]  # no patience here: the reason is the divergence, not a cap
    assert not stop["converged"] and stop["reason"].startswith("diverged: non-finite loss")


def test_a_solve_failing_while_sampling_blames_sampling(tmp_path, monkeypatch):
    from replication.flows.base import Flow
    from replication.flows.ode import NFELimitExceeded

    def fail(*args, **kwargs):
        raise NFELimitExceeded("one ODE solve exceeded max_nfe = 3")

    monkeypatch.setattr(Flow, "sample", fail)
    metrics = train.run(tiny(iterations=4, eval_every=2), tmp_path, progress=False)
    assert metrics["status"] == "ok; sampling failed: one ODE solve exceeded max_nfe = 3"
    assert metrics["test_nll"] is not None  # the test score itself succeeded


def fresh_with_patience(patience: int = 50, iterations: int = 400) -> config.ExperimentConfig:
    """Fresh draws every iteration and a convergence stop: the default profile's toy setup."""
    resolved = tiny(iterations=iterations, patience=patience).to_dict()
    resolved["data"]["train_draws"] = "fresh"
    return config.parse(resolved)


def test_convergence_stop_is_recorded_and_resumes_exactly(tmp_path, monkeypatch):
    """A run stops once its validation NLL stalls within its standard error for `patience`
    iterations; the stop, the fresh training draws and the resume are all reproducible."""
    reference = train.run(fresh_with_patience(), tmp_path / "reference", progress=False)
    stop = reference["convergence"]
    assert stop["converged"] and stop["stopped_at"] < 400, stop
    assert stop["stopped_at"] - stop["last_improvement"] >= stop["patience"]
    assert reference["iterations"] == stop["stopped_at"] == reference["val_curve"][-1]["iteration"]
    assert "fresh" in reference["data"]["train"] and "train" not in reference["data"]["sizes"]
    assert all(point["val_nll_se"] > 0 for point in reference["val_curve"])
    interrupt_after_second_checkpoint(fresh_with_patience(), tmp_path / "resumed", monkeypatch)
    resumed = train.run(fresh_with_patience(), tmp_path / "resumed", progress=False)
    assert without_timings(resumed) == without_timings(reference)


def test_a_run_without_patience_reports_its_cap(tmp_path):
    metrics = train.run(tiny(iterations=100), tmp_path, progress=False)
    stop = metrics["convergence"]
    assert not stop["converged"] and stop["stopped_at"] == stop["cap"] == 100
    assert "no patience" in stop["reason"]
    capped = train.run(fresh_with_patience(patience=400, iterations=100), tmp_path / "capped")
    assert not capped["convergence"]["converged"]
    assert capped["convergence"]["reason"] == "iteration cap 100 reached"


def test_the_loop_minimises_the_objective_a_flow_is_given():
    """A method with another objective than maximum likelihood passes it to its Flow; the loop
    steps on it and records zeros for the stats it does not report."""
    transform = build("realnvp", (2,), couplings=2, hidden=(8,)).transform

    def shrink(flow: Flow, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        z, _ = flow.transform(x)
        loss = z.square().mean()
        return loss, {"loss": loss.detach()}

    flow = Flow(transform, StandardNormal((2,)), objective=shrink)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    x = torch.randn(64, 2)
    steps = [train.train_step(flow, optimizer, x, clip=None) for _ in range(20)]
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert {key: steps[0][key] for key in ("nfe_forward", "nfe_backward", "kinetic", "jacobian")} == {
        "nfe_forward": 0, "nfe_backward": 0, "kinetic": 0.0, "jacobian": 0.0,
    }  # fmt: skip
