"""The benchmark runs and reports every column (no timing is asserted: it is not a test of
speed, only that the measurement works)."""

from __future__ import annotations

import json
from pathlib import Path

from replication import bench

CONFIGS = Path(__file__).parent.parent / "config" / "experiments" / "toy"


def test_bench_writes_json_and_markdown(tmp_path):
    settings = bench.BenchSettings(batch_size=64, iterations=2, repeats=2, warmup=1)
    results = bench.run([CONFIGS / "realnvp.yaml", CONFIGS / "ffjord.yaml"], settings, tmp_path)
    record = json.loads((tmp_path / "bench.json").read_text())
    assert [r["method"] for r in record["results"]] == ["realnvp", "ffjord"]
    discrete, continuous = results
    assert discrete["nfe_forward"] == 0 and discrete["ms_per_evaluation"] is None
    assert continuous["nfe_forward"] == 20 and continuous["nfe_backward"] == 0  # rk4, 5 steps
    assert continuous["iteration_ms_per_evaluation"] > 0 and record["provenance"]["commit"]
    table = (tmp_path / "bench.md").read_text()
    assert "| realnvp" in table and "one thread" in table
