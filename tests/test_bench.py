"""The benchmark runs and reports every column (no timing is asserted: it is not a test of
speed, only that the measurement works)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from replication import bench
from replication.flows import build, recipe
from replication.flows.continuous import ContinuousFlow
from replication.typed import ConfigError

CONFIGS = Path(__file__).parent.parent / "config" / "experiments" / "toy"


def test_bench_writes_json_and_markdown(tmp_path):
    settings = bench.BenchSettings(batch_size=64, iterations=2, repeats=2, warmup=1)
    results = bench.run([CONFIGS / "realnvp.yaml", CONFIGS / "rnode.yaml"], settings, tmp_path)
    record = json.loads((tmp_path / "bench.json").read_text())
    assert [r["method"] for r in record["results"]] == ["realnvp", "rnode"]
    discrete, continuous = results
    assert discrete["nfe_forward"] == 0 and discrete["ms_per_evaluation"] is None
    assert continuous["nfe_forward"] == 16 and continuous["nfe_backward"] == 0  # rk4, 4 steps
    assert continuous["iteration_ms_per_evaluation"] > 0 and record["provenance"]["commit"]
    table = (tmp_path / "bench.md").read_text()
    assert "| realnvp" in table and "one thread" in table
    assert continuous["evaluation_ms"] > 0 and continuous["overhead_ratio"] > 0
    assert discrete["evaluation_ms"] is None and discrete["overhead_ratio"] is None
    assert all(len(r["load_average"]["start"]) == 3 for r in results)


def test_bench_splits_an_adaptive_solve_into_its_evaluations(tmp_path):
    """rk4 has 4 evaluations per step and no estimate; dopri5's forward NFE is its initial
    evaluations plus 6 per step, accepted or rejected."""
    settings = bench.BenchSettings(batch_size=64, iterations=2, repeats=1, warmup=0)
    adaptive = "model.train_solver={method: dopri5, atol: 1.0e-3, rtol: 1.0e-3}"
    (result,) = bench.run([CONFIGS / "ffjord.yaml"], settings, tmp_path, (adaptive,))
    split = result["evaluations_per_solve"]
    assert split["initial"] == 2  # f(t0) and the first-step estimate
    steps = split["accepted"] + split["rejected"]
    assert result["nfe_forward"] == pytest.approx(split["initial"] + 6 * steps)


def test_no_warmup_is_allowed_and_bad_settings_are_config_errors(tmp_path):
    settings = bench.BenchSettings(batch_size=16, iterations=1, repeats=1, warmup=0)
    (result,) = bench.run([CONFIGS / "nice.yaml"], settings, tmp_path)
    assert result["iteration_ms"]["median"] > 0
    for bad, message in (({"repeats": 0}, "repeats must be >= 1"),
                         ({"warmup": -1}, "warmup must be >= 0"),
                         ({"batch_size": -5}, "batch size must be >= 1"),
                         ({"compile": True, "warmup": 0}, "--compile needs --warmup >= 1"),
                         ({"versus": "lean"}, "versus must be KEY=VALUE")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            bench.BenchSettings(**bad)


@pytest.mark.slow  # torch.compile's cold start: tens of seconds
def test_bench_compile_times_the_compiled_objective_right_after_the_eager_one(tmp_path):
    settings = bench.BenchSettings(batch_size=64, iterations=2, repeats=1, warmup=1, compile=True)
    small = ("model.couplings=2", "model.hidden=[8]")
    eager, compiled = bench.run([CONFIGS / "realnvp.yaml"], settings, tmp_path, small)
    assert (eager["compiled"], compiled["compiled"]) == (False, True)
    assert compiled["iteration_ms"]["median"] > 0 and compiled["warmup_seconds"] > 0
    assert "| realnvp (compiled)" in (tmp_path / "bench.md").read_text()


def test_bench_versus_times_the_override_right_after_the_configs_own(tmp_path):
    """The FFJORD toy config trains with the lean dopri5 loop; --versus times torchdiffeq's on
    the same config next to it, taking the same steps (same evaluations per iteration)."""
    versus = "model.train_solver.implementation=torchdiffeq"
    settings = bench.BenchSettings(batch_size=32, iterations=2, repeats=1, warmup=1, versus=versus)
    small = ("model.hidden=[8, 8]",)
    own, other = bench.run([CONFIGS / "ffjord.yaml"], settings, tmp_path, small)
    assert (own["variant"], other["variant"]) == (None, versus)
    assert own["resolved"]["model"]["train_solver"]["implementation"] == "lean"
    assert other["resolved"]["model"]["train_solver"]["implementation"] == "torchdiffeq"
    assert own["nfe_forward"] == other["nfe_forward"]
    assert f"| ffjord ({versus})" in (tmp_path / "bench.md").read_text()


def test_isolated_evaluation_times_each_block_of_a_multiscale_flow_at_its_own_input():
    """Later blocks of a multiscale image flow see fewer dimensions than the batch has (a
    Hutchinson probe drawn for the whole batch would not fit them)."""
    options = {**recipe("ffjord", (1, 4, 4)).tiny, "divergence": "hutchinson"}
    flow = build("ffjord", (1, 4, 4), **options).train()
    blocks = [m for m in flow.modules() if isinstance(m, ContinuousFlow)]
    assert len(blocks) > 1
    inputs = bench.block_inputs(flow, torch.rand(8, 1, 4, 4))
    assert [x.shape[1:] for x in inputs] != [inputs[0].shape[1:]] * len(inputs)
    assert bench.evaluation_ms(flow, inputs) > 0
