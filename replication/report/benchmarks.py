"""``benchmarks.md``: what each method costs per training iteration, and how soon it fits.

One row per method, over the profile's finished toy runs (the summary, :mod:`.summary`):

- milliseconds per training iteration: the median over runs of each run's seconds per
  iteration;
- training NFE per iteration: forward + backward, mean ± standard deviation over training,
  averaged over seeds (as in ``toy.md``);
- time to target on 8gaussians and rings: the training seconds at the first validation whose
  NLL is <= H + 0.03 nats (H the density's entropy; summary ``seconds_to_target``), the mean
  over the seeds that reached it, with k/n seeds reached;
- overhead per run: the median over runs of what a run's job spent besides training
  iterations, validation and test scoring (summary ``overhead_seconds``: start-up, loading and
  saving, the figure grid and the per-run checks).

With the toy benchmark file (``python -m replication bench`` on the six toy configs, one thread;
rule ``bench_toy``), each method's isolated cost of one evaluation of its ODE field and its
overhead ratio, iteration time / (NFE x evaluation cost), are added, and the benchmark's commit
and machine load go into the caption. Without it those columns show "–". Nothing else is read,
so the same inputs give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from replication import atomic
from replication.report.summary import TARGET_MARGIN
from replication.report.tables import caption, train_nfe_cell
from replication.status import usable
from replication.typed import ConfigError, read_json

TARGET_DATASETS = ("8gaussians", "rings")
_DASH = "–"


def _number(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _DASH
    return f"{value:,.{digits}f}"


def read_bench(path: str | Path | None) -> dict | None:
    """The benchmark record ``bench`` wrote at ``path``, or None when no path is given."""
    if path is None:
        return None
    record = read_json(path, "benchmark file")
    if not isinstance(record, dict) or not isinstance(record.get("results"), list):
        raise ConfigError(f"{path} is not a bench.json written by `python -m replication bench`")
    return record


def _bench_result(record: Mapping | None, method: str) -> Mapping:
    """The benchmark of ``method``'s own config (``<method>.yaml``), else its first one."""
    results = [
        r
        for r in (record or {}).get("results", [])
        # Training runs eager, as its config says: not a compiled or overridden measurement.
        if r.get("method") == method and not r.get("compiled") and not r.get("variant")
    ]
    own = [r for r in results if Path(str(r.get("config"))).stem == method]
    return (own or results or [{}])[0]


def time_to_target(runs: pd.DataFrame) -> str:
    """Mean seconds to target over the seeds that reached it, with [k/n reached]; "–" when
    no target was set (no entropy, or a summary written before time to target)."""
    if runs.empty or runs["target_nll"].isna().all():
        return _DASH
    reached = runs["seconds_to_target"].dropna().astype(float)
    mean = _number(reached.mean(), 1) if len(reached) else "not reached"
    return f"{mean} [{len(reached)}/{len(runs)} reached]"


def _row(method: str, runs: pd.DataFrame, bench: Mapping) -> dict:
    ok = runs[runs["status"].map(usable)]
    row = {
        "method": method,
        "seeds ok": f"{len(ok)}/{len(runs)}",
        "ms/iter": _number(ok["seconds_per_iter"].astype(float).median() * 1000, 1),
        "train NFE/iter": train_nfe_cell(ok),
    }
    for dataset in TARGET_DATASETS:
        row[f"time to target, {dataset} (s)"] = time_to_target(ok[ok["dataset"] == dataset])
    row["overhead s/run"] = _number(ok["overhead_seconds"].astype(float).median(), 1)
    row["bench ms/iter"] = _number((bench.get("iteration_ms") or {}).get("median"), 1)
    row["eval ms (fwd+bwd)"] = _number(bench.get("evaluation_ms"), 3)
    row["overhead ratio"] = _number(bench.get("overhead_ratio"), 2)
    return row


def _provenance(record: Mapping | None, bench_path: str | Path | None) -> str:
    """The benchmark's provenance, or why its columns are empty."""
    if record is None:
        return (
            "The toy benchmark was not run: the bench ms/iter, evaluation cost and overhead "
            "ratio columns show –. Run it on demand with `snakemake results/timing/toy/"
            "bench.json --cores 1` on an otherwise idle machine, then re-render."
        )
    source = record.get("provenance") or {}
    commit = str(source.get("commit") or "unrecorded")[:12]
    dirty = " (with uncommitted changes)" if source.get("dirty") else ""
    load = record.get("load_average") or {}
    before, after = (load.get(key) or [math.nan] for key in ("before", "after"))
    settings = record.get("settings") or {}
    timed = settings.get("iterations", 0) * settings.get("repeats", 0)
    batch = settings.get("batch_size")
    batch = "each config's own batch size" if batch is None else f"batch size {batch}"
    name = f" `{Path(bench_path).as_posix()}`" if bench_path else ""
    return (
        f"Toy benchmark{name} (`python -m replication bench`, one "
        f"thread, {batch}, {timed} timed iterations after "
        f"{settings.get('warmup', 0)} untimed): commit `{commit}`{dirty}; "
        f"{record.get('cpu_model') or 'CPU unrecorded'}, {record.get('cpu_count')} cores; load "
        f"(1-minute average) {before[0]:.1f} → {after[0]:.1f} (a busy machine slows every "
        "step). bench ms/iter: median iteration time in that benchmark; eval ms: one isolated "
        "evaluation of the ODE field (dynamics and divergence), forward and backward; overhead "
        "ratio: iteration time / (NFE x eval ms), 1 meaning nothing but evaluations."
    )


def benchmarks_table(
    frame: pd.DataFrame, bench: Mapping | None = None, bench_path: str | Path | None = None
) -> str:
    """The text of ``benchmarks.md`` from a summary and an optional toy benchmark record."""
    toy = frame[frame["family"] == "toy"]
    if toy.empty:
        return "# Benchmarks\n\nNo toy runs in this profile.\n"
    rows = [
        _row(method, toy[toy["method"] == method], _bench_result(bench, method))
        for method in dict.fromkeys(toy["method"])
    ]
    table = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    return (
        f"# Benchmarks\n\n{caption(toy)}\n\n"
        "Cost per method on the toy densities, over finished runs. ms/iter: median over runs "
        "of each run's training seconds per iteration; train NFE/iter: forward + backward "
        "function evaluations per training iteration, mean ± standard deviation over training, "
        "averaged over seeds (– for discrete flows). **Time to target**: training seconds "
        f"(validation excluded) until the validation NLL first reached H + {TARGET_MARGIN} "
        "nats, H the density's entropy (toy.md), checked at each validation of the "
        "validation split; the mean over the seeds that reached it, [k/n reached] of the "
        "finished seeds. **Overhead s/run**: median over runs of the run's job wall-clock "
        "(Snakemake's benchmark.tsv) minus its training-iteration, validation and test-scoring "
        "seconds: start-up and imports, loading and saving, the figure grid and the per-run "
        "checks (jobs share the machine's cores, as in the pipeline).\n\n"
        f"{_provenance(bench, bench_path)}\n\n{table}\n"
    )


def write(frame: pd.DataFrame, out: str | Path, bench_path: str | Path | None = None) -> Path:
    """Write ``benchmarks.md`` from ``frame`` (a summary) and the bench file, if given."""
    atomic.write_text(out, benchmarks_table(frame, read_bench(bench_path), bench_path))
    return Path(out)
