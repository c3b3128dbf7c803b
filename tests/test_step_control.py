"""How adaptive training solves spend their evaluations, and the training-only step controls
(joint RMS norm, warm start, landing on the interval's end) that cut them."""

from __future__ import annotations

import pytest
import torch
from test_train import interrupt_after_second_checkpoint, without_timings

from replication import config, train
from replication.flows import build
from replication.flows.augmented import AugmentedField
from replication.flows.continuous import solver_statistics
from replication.typed import ConfigError

ADAPTIVE = {"method": "dopri5", "atol": 1e-3, "rtol": 1e-3}
LEAN = {**ADAPTIVE, "norm": "rms", "warm_start": True, "land_on_end": True}
DOPRI5_NEW_EVALUATIONS_PER_STEP = 6  # 7 stages, the first reusing the last one (FSAL)


def ffjord(train_solver: dict) -> torch.nn.Module:
    return build("ffjord", (2,), hidden=(16, 16), train_solver=train_solver).train()


def test_every_evaluation_is_accounted_for():
    flow = ffjord(ADAPTIVE)
    x = torch.randn(64, 2) * 2
    with flow.solving("train"):
        flow.log_prob(x)
    stats = solver_statistics(flow)
    steps = stats["accepted"] + stats["rejected"]
    assert stats["solves"] == 1 and stats["initial"] == 2  # f(t0) and the step-size estimate
    assert flow.evaluations() == stats["initial"] + DOPRI5_NEW_EVALUATIONS_PER_STEP * steps


def test_warm_start_reuses_the_largest_accepted_step_in_training_only():
    flow = ffjord({**ADAPTIVE, "warm_start": True})
    block = next(m for m in flow.modules() if hasattr(m, "first_step"))
    x = torch.randn(64, 2) * 2
    with flow.solving("train"):
        flow.log_prob(x)
        first = float(block.first_step)
        assert 0 < first <= 1 and solver_statistics(flow)["initial"] == 2
        flow.log_prob(x)
        assert solver_statistics(flow)["initial"] == 3  # the second solve skipped the estimate
    remembered = float(block.first_step)
    with torch.no_grad():
        flow.log_prob(x)
    assert float(block.first_step) == remembered  # evaluation solves neither read nor write it
    assert any(key.endswith("first_step") for key in flow.state_dict())  # checkpoints carry it


def test_land_on_end_never_steps_past_the_end(monkeypatch):
    """Every step taken (accepted or rejected) ends at s <= 1; without the option, steps do
    overshoot on this flow."""
    for land, overshoots in ((True, False), (False, True)):
        ends: list[float] = []

        def spy(self, t0, y0, dt, ends=ends):
            ends.append(float((t0 + dt).detach()))

        monkeypatch.setattr(AugmentedField, "callback_accept_step", spy)
        monkeypatch.setattr(AugmentedField, "callback_reject_step", spy)
        torch.manual_seed(0)
        flow = ffjord({**ADAPTIVE, "land_on_end": land})
        with flow.solving("train"):
            flow.log_prob(torch.randn(64, 2) * 2)
        assert ends and (max(ends) > 1 + 1e-6) == overshoots


def test_lean_control_solves_to_the_same_density():
    torch.manual_seed(0)
    plain = ffjord({**ADAPTIVE, "atol": 1e-7, "rtol": 1e-7})
    lean = ffjord({**LEAN, "atol": 1e-7, "rtol": 1e-7})
    lean.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(32, 2, dtype=torch.float64) * 2
    plain, lean = plain.double(), lean.double()
    with plain.solving("train"), lean.solving("train"):
        for _ in range(2):  # the second solve is warm-started
            torch.testing.assert_close(lean.log_prob(x), plain.log_prob(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eval_solver": {"method": "dopri5", "norm": "rms"}}, "eval_solver must control"),
        ({"eval_solver": {"method": "dopri5", "warm_start": True}}, "eval_solver must control"),
        ({"train_solver": {"method": "rk4", "step_size": 0.25, "warm_start": True}},
         "adaptive solvers only"),
        ({"train_solver": {"method": "dopri5", "norm": "l2"}}, "norm"),
    ],
)  # fmt: skip
def test_evaluation_keeps_ffjords_step_control(options, message):
    with pytest.raises(ConfigError, match=message):
        build("ffjord", (2,), **options)


def tiny_lean_ffjord() -> config.ExperimentConfig:
    return config.parse(
        {
            "model": {"method": "ffjord", "hidden": [16, 16], "train_solver": LEAN},
            "data": {"name": "8gaussians", "train_size": 2000, "val_size": 500, "test_size": 500},
            "train": {"iterations": 30, "batch_size": 64, "lr": 5e-3, "eval_every": 10},
            "eval": {"batch_size": 500, "sample_count": 50},
        }
    )


def test_warm_started_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    reference = train.run(tiny_lean_ffjord(), tmp_path / "reference", progress=False)
    interrupt_after_second_checkpoint(tiny_lean_ffjord(), tmp_path / "resumed", monkeypatch)
    resumed = train.run(tiny_lean_ffjord(), tmp_path / "resumed", progress=False)
    assert without_timings(resumed) == without_timings(reference)
