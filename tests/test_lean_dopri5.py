"""The lean dopri5 training loop (flows/lean_dopri5.py) against torchdiffeq's dopri5 and closed
forms: the same steps, the same end state and gradients, the same failures."""

from __future__ import annotations

import math

import pytest
import torch
from test_step_control import LEAN, tiny_lean_ffjord
from test_train import interrupt_after_second_checkpoint, without_timings

from replication import config, solver_choice, train
from replication.flows import build, lean_dopri5
from replication.flows.augmented import AugmentedField
from replication.flows.continuous import solver_statistics
from replication.flows.ode import NFELimitExceeded, NonFiniteState, SolverUnderflow
from replication.typed import ConfigError

LOOP = {**LEAN, "implementation": "lean"}


def _steps_taken(flow, x, solves, monkeypatch):
    """Every step of ``solves`` training solves as (accepted?, t0, dt), the last log-density
    and the gradients of its mean."""
    steps: list[tuple[bool, float, float]] = []
    monkeypatch.setattr(
        AugmentedField,
        "callback_accept_step",
        lambda self, t0, y0, dt: steps.append((True, float(t0.detach()), float(dt.detach()))),
    )
    monkeypatch.setattr(AugmentedField, "callback_reject_step",
                        lambda self, t0, y0, dt: steps.append((False, float(t0.detach()), float(dt.detach()))))  # fmt: skip
    with flow.solving("train"):
        for _ in range(solves):
            flow.zero_grad()
            log_density = flow.log_prob(x)
            log_density.mean().backward()
    return steps, log_density.detach(), [p.grad for p in flow.parameters()]


@pytest.mark.parametrize("warm_start", [True, False])
def test_takes_torchdiffeqs_steps_to_its_end_state_and_gradients(warm_start, monkeypatch):
    """Float64, an FFJORD block at 1e-3: step for step the same accepted and rejected steps as
    torchdiffeq's dopri5 under the same controller, the same log-density to rounding, the same
    gradients to 1e-6 (torchdiffeq also differentiates through its first-step estimate)."""
    torch.manual_seed(0)
    options = {**LEAN, "warm_start": warm_start}
    reference = build("ffjord", (2,), hidden=(16, 16), train_solver=options).train().double()
    lean = build(
        "ffjord", (2,), hidden=(16, 16), train_solver={**options, "implementation": "lean"}
    )
    lean = lean.train().double()
    lean.load_state_dict(reference.state_dict())
    x = torch.randn(64, 2, dtype=torch.float64) * 2
    expected = _steps_taken(reference, x, 3, monkeypatch)
    found = _steps_taken(lean, x, 3, monkeypatch)
    assert [s[0] for s in found[0]] == [s[0] for s in expected[0]]
    assert any(not accepted for accepted, *_ in expected[0]) or len(expected[0]) >= 6
    torch.testing.assert_close(torch.tensor(found[0])[:, 1:], torch.tensor(expected[0])[:, 1:],
                               rtol=1e-9, atol=1e-12)  # fmt: skip
    torch.testing.assert_close(found[1], expected[1], rtol=1e-10, atol=1e-10)
    for grad, reference_grad in zip(found[2], expected[2], strict=True):
        torch.testing.assert_close(grad, reference_grad, rtol=1e-6, atol=1e-6)
    assert solver_statistics(lean) == solver_statistics(reference)
    assert lean.evaluations() == reference.evaluations()


class Linear(torch.nn.Module):
    """dy/dt = a y: y(t) = y0 exp(a t)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.rate * y


def _rms(tensor):
    return tensor.square().mean().sqrt()


@pytest.mark.parametrize(("t0", "t1"), [(0.0, 2.0), (2.0, 0.0)])
def test_solves_a_closed_form_in_both_directions(t0, t1):
    y0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    field = Linear(-1.3)
    end = lean_dopri5.solve(field, y0, t0, t1, 1e-9, 1e-9, _rms)
    torch.testing.assert_close(end, y0 * math.exp(-1.3 * (t1 - t0)), rtol=1e-7, atol=1e-9)
    assert (field.calls - 2) % 6 == 0  # f(t0), the step estimate, then 6 per step


def test_gradient_matches_the_closed_form():
    """d y(T) / d y0 = exp(a T) for dy/dt = a y."""
    y0 = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    lean_dopri5.solve(Linear(0.8), y0, 0.0, 1.5, 1e-10, 1e-10, _rms).sum().backward()
    assert y0.grad.item() == pytest.approx(math.exp(0.8 * 1.5), rel=1e-7)


class Exploding(torch.nn.Module):
    def forward(self, t, y):
        return torch.full_like(y, math.nan) if t > 0.3 else y


def test_failures_are_the_solvers_failures():
    y0 = torch.ones(4, 3)
    with pytest.raises(NonFiniteState):  # a NaN start state
        lean_dopri5.solve(Linear(1.0), y0 * math.nan, 0.0, 1.0, 1e-3, 1e-3, _rms, 0.1)
    flow = build("ffjord", (2,), hidden=(8,), train_solver={**LOOP, "atol": 1e-12, "rtol": 1e-12},
                 max_nfe=50).train()  # fmt: skip
    with flow.solving("train"), pytest.raises(NFELimitExceeded):
        flow.log_prob(torch.randn(16, 2) * 3)

    with pytest.raises(SolverUnderflow):  # NaN slopes past t = 0.3: every step shrinks
        lean_dopri5.solve(Exploding(), y0, 0.0, 1.0, 1e-3, 1e-3, _rms, 0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({**LOOP, "method": "bosh3"}, "needs method: dopri5"),
        ({**LOOP, "adjoint": True}, "adjoint: false"),
        ({**LOOP, "land_on_end": False}, "land_on_end: true"),
        ({"method": "rk4", "step_size": 0.25, "implementation": "lean"}, "needs method: dopri5"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        build("ffjord", (2,), train_solver=options)


def test_evaluation_never_runs_the_lean_loop():
    with pytest.raises(ConfigError, match="eval_solver must control"):
        build("ffjord", (2,), eval_solver=LOOP)


def test_config_key_path_and_digest():
    """A bad value names its key path; the option at its default leaves committed digests."""
    base = tiny_lean_ffjord().to_dict()
    base["model"]["train_solver"] = {**LEAN, "implementation": "scipy"}
    with pytest.raises(ConfigError, match="model.train_solver.implementation"):
        config.parse(base)
    base["model"]["train_solver"] = LEAN
    explicit = {**LEAN, "implementation": "torchdiffeq"}
    same = config.parse({**base, "model": {**base["model"], "train_solver": explicit}})
    assert same.digest() == config.parse(base).digest()


def _lean_run() -> config.ExperimentConfig:
    experiment = tiny_lean_ffjord().to_dict()
    experiment["model"]["train_solver"] = LOOP
    return config.parse(experiment)


def test_lean_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    reference = train.run(_lean_run(), tmp_path / "reference", progress=False)
    interrupt_after_second_checkpoint(_lean_run(), tmp_path / "resumed", monkeypatch)
    resumed = train.run(_lean_run(), tmp_path / "resumed", progress=False)
    assert without_timings(resumed) == without_timings(reference)
    assert reference["config"]["model"]["train_solver"]["implementation"] == "lean"


def test_metrics_say_how_and_why_each_phase_solved(tmp_path):
    metrics = train.run(_lean_run(), tmp_path / "run", progress=False)
    solvers = metrics["solvers"]
    assert "loop: lean" in solvers["train"]["how"] and "at atol 0.001" in solvers["train"]["how"]
    assert any("'Lean training solver'" in why for why in solvers["train"]["why"])
    assert any("'Training tolerance'" in why for why in solvers["train"]["why"])
    assert "loop: torchdiffeq" in solvers["evaluate"]["how"]
    assert "compared with the papers" in solvers["evaluate"]["why"][0]
    grid = {"method": "rk4", "step_size": 0.25}
    rk4 = config.parse(
        {**_lean_run().to_dict(), "model": {"method": "rnode", "train_solver": grid}}
    )
    assert "fixed grid" in solver_choice.record(rk4.model.options)["train"]["why"][0]
    realnvp = config.parse({**_lean_run().to_dict(), "model": {"method": "realnvp"}})
    assert solver_choice.record(realnvp.model.options) is None
