"""benchmarks.md: cost and time to target per method, with and without the toy benchmark."""

from __future__ import annotations

import json

import pandas as pd

from replication.__main__ import main
from replication.report import benchmarks
from replication.report import summary as summary_module

# method: (seconds per iteration, training NFE per iteration, seconds to target per seed)
RUNS = {
    "ffjord": (0.050, 60.0, (10.0, 20.0, None)),
    "glow": (0.010, None, (None, None, None)),
}


def _frame() -> pd.DataFrame:
    """A toy summary: two methods on 8gaussians and rings, three seeds each."""
    rows = []
    for method, (seconds, nfe, reached) in RUNS.items():
        for dataset in ("8gaussians", "rings"):
            for seed, to_target in enumerate(reached):
                rows.append({
                    "profile": "synthetic", "family": "toy", "dataset": dataset,
                    "method": method, "seed": seed, "status": "ok", "budget": "reduced",
                    "seconds_per_iter": seconds * (1 + seed), "train_nfe": nfe,
                    "nfe_forward_sd": None if nfe is None else 4.0, "nfe_backward_sd": 3.0,
                    "target_nll": 2.86, "seconds_to_target": to_target, "converged": True,
                    "overhead_seconds": None if nfe is None else 4.0 + seed,
                    "commit": "0" * 40, "dirty": False, "device": "cpu", "precision": "float32",
                })  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=list(summary_module.COLUMNS))


def _bench() -> dict:
    result = {"config": "config/experiments/toy/ffjord.yaml", "method": "ffjord",
              "iteration_ms": {"median": 48.0}, "evaluation_ms": 0.4, "overhead_ratio": 2.0}  # fmt: skip
    return {
        "settings": {"batch_size": None, "iterations": 20, "repeats": 5, "warmup": 5},
        "results": [result],
        "provenance": {"commit": "abcdef0123456789" + "0" * 24, "dirty": False},
        "load_average": {"before": [0.5, 0.4, 0.3], "after": [1.5, 0.6, 0.4]},
        "cpu_model": "Test CPU",
        "cpu_count": 2,
    }


def _row(text: str, method: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {method} ")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_without_the_bench_file_its_columns_are_dashes_and_the_caption_says_so():
    text = benchmarks.benchmarks_table(_frame())
    assert "The toy benchmark was not run" in text
    assert "H + 0.03 nats" in text and "validation split" in text
    ffjord = _row(text, "ffjord")
    # seeds ok, median ms/iter over 6 runs (50, 100, 150 twice), NFE mean ± sd
    assert ffjord[1:4] == ["6/6", "100.0", "60.0 ± 5.0"]
    assert ffjord[4:6] == ["15.0 [2/3 reached]"] * 2  # mean of 10 s and 20 s
    assert ffjord[6] == "5.0"  # overhead: median of 4, 5, 6 s twice
    assert ffjord[7:] == ["–", "–", "–"]
    assert _row(text, "glow")[6] == "–"  # no job benchmark recorded
    assert _row(text, "glow")[3:6] == [
        "–",
        "not reached [0/3 reached]",
        "not reached [0/3 reached]",
    ]


def test_with_the_bench_file_its_numbers_and_provenance_are_shown(tmp_path):
    summary_path, bench_path = tmp_path / "summary.csv", tmp_path / "bench.json"
    summary_module.write(_frame(), summary_path)
    bench_path.write_text(json.dumps(_bench()))
    out = tmp_path / "benchmarks.md"
    args = ["benchmarks", "--summary", str(summary_path), "--bench", str(bench_path)]
    assert main([*args, "--out", str(out)]) == 0
    text = out.read_text()
    assert "was not run" not in text
    assert "commit `abcdef012345`" in text and "load (1-minute average) 0.5 → 1.5" in text
    assert "each config's own batch size, 100 timed iterations after 5 untimed" in text
    assert _row(text, "ffjord")[7:] == ["48.0", "0.400", "2.00"]
    assert _row(text, "glow")[7:] == ["–", "–", "–"]  # not in the benchmark
    assert "Profile `synthetic`" in text  # the tables' caption


def test_a_summary_without_time_to_target_shows_dashes():
    old = _frame().assign(target_nll=None, seconds_to_target=None)
    assert _row(benchmarks.benchmarks_table(old), "ffjord")[4:6] == ["–", "–"]


def test_overhead_is_the_jobs_wall_clock_less_training_validation_and_test(tmp_path):
    metrics = {"timing": {"train_seconds": 30.0, "validation_seconds": 4.0, "eval_seconds": 2.5}}
    path = tmp_path / "metrics.json"
    assert summary_module.overhead_seconds(metrics, path) is None  # no job benchmark
    (tmp_path / "benchmark.tsv").write_text("s\th:m:s\tmax_rss\n40.0\t0:00:40\t600.0\n")
    assert summary_module.overhead_seconds(metrics, path) == 3.5
    # A resumed job: Snakemake timed only the last attempt, shorter than all the training.
    resumed = {"timing": {"train_seconds": 50.0, "validation_seconds": 4.0, "eval_seconds": 2.5}}
    assert summary_module.overhead_seconds(resumed, path) is None
