"""The MNIST verdict: Student-t interval over seeds and the 0.02 bits/dim band, every seed
required, and only for runs of the paper config; the paper budgets' projection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from replication import config
from replication.__main__ import main
from replication.report import budget, citations, summary, tables
from replication.report.verdict import judge, t_quantile

ROOT = Path(__file__).parent.parent
CITATIONS = ROOT / "config" / "citations.yaml"
PAPER = "paper-digest"


def runs(values: list[float | None], digest: str = PAPER, failed: tuple[int, ...] = ()):
    """One method's summary rows: seed i scored values[i] (None: no number)."""
    return pd.DataFrame(
        {
            "seed": list(range(len(values))),
            "status": ["diverged" if i in failed else "ok" for i in range(len(values))],
            "test_bpd": [math.nan if v is None else v for v in values],
            "protocol_digest": digest,
        }
    )


@pytest.mark.parametrize(
    ("dof", "quantile"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (30, 2.0423)]
)
def test_t_quantiles_match_the_tables(dof, quantile):
    assert t_quantile(0.975, dof) == pytest.approx(quantile, abs=1e-4)


def test_reproduced_needs_the_interval_and_the_band():
    # mean 4.37, sd 0.01, n = 3: half-width 4.303 * 0.01 / sqrt(3) = 0.0248.
    judged = judge(runs([4.36, 4.37, 4.38]), 4.36, PAPER, [0, 1, 2])
    assert judged.label == "reproduced" and judged.difference == "+0.010"
    assert judged.interval == "4.345 – 4.395"


def test_tight_seeds_away_from_the_number_are_worse_or_better():
    # Within 0.02 but the interval (half-width 0.0025) excludes the published value.
    assert judge(runs([4.374, 4.375, 4.376]), 4.36, PAPER, [0, 1, 2]).label == (
        "worse than published"
    )
    assert judge(runs([0.949, 0.95, 0.951]), 0.99, PAPER, [0, 1, 2]).label == (
        "better than published"
    )


def test_wide_seeds_beyond_the_band_are_not_reproduced():
    # The interval (half-width ~0.25) holds 4.36, but the mean is 0.04 away.
    judged = judge(runs([4.30, 4.40, 4.50]), 4.36, PAPER, [0, 1, 2])
    assert judged.label == "worse than published" and judged.difference == "+0.040"


def test_a_failed_or_missing_seed_makes_it_incomplete():
    assert judge(runs([4.36, 4.36, None], failed=(2,)), 4.36, PAPER, [0, 1, 2]).label == (
        "incomplete: 2/3 seeds finished"
    )
    assert judge(runs([4.36, 4.36]), 4.36, PAPER, [0, 1, 2]).label == (
        "incomplete: 2/3 seeds finished"
    )
    assert judge(runs([4.36]), 4.36, PAPER, [0]).label.startswith("incomplete: 1 seed")


def test_only_the_paper_config_is_judged():
    assert judge(runs([4.36, 4.36], "cpu"), 4.36, PAPER, [0, 1]).label.startswith("not comparable")
    mixed = pd.concat([runs([4.36]), runs([4.36], "other").assign(seed=1)])
    assert judge(mixed, 4.36, PAPER, [0, 1]).label.startswith("not comparable")
    assert judge(runs([4.36, 4.36]), None, PAPER, [0, 1]).label == "no published number"


def test_committed_cpu_runs_are_not_comparable():
    frame = summary.read(ROOT / "results/default/summary.csv")
    text = tables.mnist_table(frame, citations.load(CITATIONS, "mnist"), 0.02, [])
    rows = [line for line in text.splitlines() if line.startswith("| nice")]
    assert "not comparable: not the paper config" in rows[0]
    assert "test: noise x1; trace: exact log-det; train images: 59,500; logit: 0.05" in rows[0]


def _bench_file(tmp_path: Path, method: str, seconds: float) -> Path:
    paper = ROOT / f"config/experiments/mnist/{method}-paper.yaml"
    record = {
        "settings": {"iterations": 2, "repeats": 1, "warmup": 1},
        "results": [
            {
                "resolved": config.load(paper).to_dict(),
                "batch_size": 200,
                "iteration_ms": {"median": 1000 * seconds},
                "cpu_ms": {"median": 900 * seconds},
            }
        ],
        "provenance": {"commit": "abc", "device": {"name": "x86_64"}},
        "load_average": {"before": [1.5, 1.0, 1.0], "after": [1.0, 1.0, 1.0]},
        "cpu_model": "Test CPU",
        "cpu_count": 2,
    }
    path = tmp_path / f"{method}.json"
    path.write_text(json.dumps(record))
    return path


def test_budget_projects_measured_seconds_times_the_paper_iterations(tmp_path):
    bench = _bench_file(tmp_path, "rnode", 2.0)
    rows = {r["method"]: r for r in budget.project(citations.load(CITATIONS, "mnist"), [bench])}
    assert rows["rnode"]["projected_hours"] == pytest.approx(2.0 * 30_000 / 3600)
    assert rows["nice"]["status"] == budget.NOT_MEASURED
    out = tmp_path / "budget.json"
    assert main(["paper-budget", "--bench", str(bench), "--citations", str(CITATIONS),
                 "--out", str(out)]) == 0  # fmt: skip
    text = tables.budget_table(budget.read(out))
    assert "| rnode" in text and "16.7" in text and "Test CPU, 1 thread, 2 cores" in text


def test_a_measurement_of_another_config_is_not_used(tmp_path):
    bench = _bench_file(tmp_path, "rnode", 2.0)
    record = json.loads(bench.read_text())
    record["results"][0]["resolved"]["train"]["iterations"] = 25_000  # the old budget
    bench.write_text(json.dumps(record))
    rows = {r["method"]: r for r in budget.project(citations.load(CITATIONS, "mnist"), [bench])}
    assert rows["rnode"]["status"] == budget.NOT_MEASURED


def test_an_unmeasured_config_shows_its_reason(tmp_path):
    reasons = tmp_path / "unmeasured.yaml"
    reasons.write_text("glow: too large for this machine\n")
    rows = budget.project(citations.load(CITATIONS, "mnist"), [], budget.read_reasons(reasons))
    (glow,) = [row for row in rows if row["method"] == "glow"]
    assert glow["status"] == "not measured: too large for this machine"
    assert "not measured: too large for this machine" in tables.budget_table(rows)
