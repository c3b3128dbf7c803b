"""The report's Markdown tables, rendered from the summary alone (no training, no clock).

- ``toy.md``: test NLL per method and toy density (mean +- std over seeds), the density's
  entropy H (the best NLL possible) and the gap NLL - H, the seeds finished per cell and a
  dagger where a seed hit its iteration cap before converging; then NFE (training NFE per
  iteration as mean +- sd over training) and training time per run.
- ``mnist.md``: test bits/dim with its protocol next to the published number
  (``config/citations.yaml``), their difference and a verdict (:mod:`.verdict`): only runs of
  the paper config, with every seed finished, are judged; then the paper budgets in hours
  (:mod:`.budget`).
- ``status.md``: every run whose status is not ``ok``, with the reason.

Each table opens with a caption naming the profile, the seeds, the devices and the commits,
all read from the metrics files, so rendering the same summary always gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from replication import atomic
from replication.config import load as load_config
from replication.report import TOLERANCE_BPD
from replication.report.citations import Citation, Citations
from replication.report.summary import hit_cap
from replication.report.verdict import judge
from replication.status import OK, usable

_DASH = "–"
_COST = (
    "NFE forward and backward per training iteration at the end of training (backward "
    "evaluations happen in adjoint solves only: 0 with direct backpropagation through the "
    "solver); training NFE per iteration (forward + backward) as mean ± standard deviation "
    "over all training iterations (an adaptive solver's NFE varies from step to step; the "
    "standard deviation combines forward and backward as if independent), averaged over "
    "seeds; NFE per test batch, training time and median time per iteration"
)
_DAGGER = "†"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _DASH
    return f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return _DASH
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _mean_std(values: pd.Series, digits: int = 3) -> str:
    """``mean ± std`` over seeds (sample std); the mean alone for one seed."""
    values = values.dropna()
    if values.empty:
        return _DASH
    if len(values) == 1:
        return _number(values.iloc[0], digits)
    return f"{_number(values.mean(), digits)} ± {_number(values.std(ddof=1), digits)}"


def _short(commit: str, dirty: bool) -> str:
    return f"`{str(commit)[:12]}`" + (" (with uncommitted changes)" if dirty else "")


def caption(frame: pd.DataFrame) -> str:
    """Profile, seeds, devices, commits and budget of the runs in ``frame``, from the metrics."""
    profiles = ", ".join(f"`{p}`" for p in sorted(frame["profile"].unique()))
    seeds = sorted(int(s) for s in frame["seed"].unique())
    commits = frame.groupby("commit", sort=True)["dirty"].apply(
        lambda d: bool(d.fillna(False).any())
    )
    budgets = frame.groupby("family", sort=False)["budget"].first()
    reduced = "reduced" in budgets.values
    if len(budgets) == 1:
        budget = f"budget: {budgets.iloc[0]}" + (" (smaller than the papers')" if reduced else "")
    else:
        budget = "budgets: " + ", ".join(f"{family} {value}" for family, value in budgets.items())
        budget += " (reduced: smaller than the papers')" if reduced else ""
    return (
        f"Profile {profiles}; {len(frame)} runs; {len(seeds)} seed{'s' * (len(seeds) != 1)} "
        f"({', '.join(map(str, seeds))}); device{'s' * (frame['device'].nunique() != 1)}: "
        f"{', '.join(sorted(frame['device'].unique()))}; "
        f"precision: {', '.join(sorted(frame['precision'].unique()))}; "
        f"commit{'s' * (len(commits) != 1)}: "
        f"{', '.join(_short(c, d) for c, d in commits.items())}; {budget}."
    )


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs whose numbers are reported: ``ok``, and ``recovered`` (flagged in status.md)."""
    return frame[frame["status"].map(usable)]


def _order(values: pd.Series) -> list[str]:
    """Distinct values in order of first appearance (the profile's order)."""
    return list(dict.fromkeys(values))


def _markdown(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _entropy(h: dict[str, float]) -> str:
    return f"{_number(h['entropy'])} ± {_number(h['se'])}"


def _test_points(frame: pd.DataFrame) -> str:
    counts = sorted(int(c) for c in frame["test_count"].dropna().unique())
    return "test splits of " + " / ".join(f"{c:,}" for c in counts) + " points"


def _gap_cell(runs: pd.DataFrame, entropy: float | None) -> str:
    ok = _ok(runs)
    if ok.empty:
        return "failed" if not runs.empty else _DASH
    cell = _mean_std(ok["test_nll"])
    if entropy is not None:
        cell += f" ({ok['test_nll'].mean() - entropy:+.3f})"
    cell += f" [{len(ok)}/{len(runs)} seed{'s' * (len(runs) != 1)}]"
    return cell + (_DAGGER if hit_cap(ok["converged"]).any() else "")


def _capped_note(frame: pd.DataFrame, keys: tuple[str, ...]) -> str:
    """The footnote of the cells marked with a dagger, or nothing when no seed hit its cap."""
    ok = _ok(frame)
    capped = ok.groupby(list(keys), sort=False)["converged"].agg(
        lambda converged: (int(hit_cap(converged).sum()), len(converged))
    )
    cells = [(key, k, n) for key, (k, n) in capped.items() if k]
    if not cells:
        return ""
    listed = "; ".join(
        f"{' '.join(key) if isinstance(key, tuple) else key}: {k} of {n} seeds"
        for key, k, n in cells
    )
    return (
        f"\n\n{_DAGGER} k of n seeds hit the iteration cap before converging (their "
        f"numbers are those at the cap): {listed}."
    )


def convergence_rule(frame: pd.DataFrame) -> str:
    """How the runs were stopped, with the patience and caps the metrics record (empty when
    no run records a convergence rule)."""
    known = frame[frame["converged"].notna()]
    if known.empty:
        return ""

    def values(column: str) -> str:
        return " / ".join(f"{int(v):,}" for v in sorted(known[column].dropna().unique()))

    return (
        " Each run trained until its validation NLL had not improved by more than its "
        f"standard error for {values('patience')} iterations (patience; converged), or until "
        f"its iteration cap of {values('iteration_cap')} (not converged); a cell with "
        f"{_DAGGER} has seeds that hit the cap. [k/n seeds]: seeds finished of seeds run."
    )


def toy_table(frame: pd.DataFrame, entropy: dict[str, dict[str, float]]) -> str:
    """``toy.md``: NLL and gap to the entropy per method x dataset, then cost per run group."""
    frame = frame[frame["family"] == "toy"]
    if frame.empty:
        return "# Toy 2D densities\n\nNo toy runs in this profile.\n"
    methods, datasets = _order(frame["method"]), _order(frame["dataset"])
    nll_rows, cost_rows = [], []
    for dataset in datasets:
        h = entropy.get(dataset)
        row = {"dataset": dataset, "entropy H": _DASH if h is None else _entropy(h)}
        for method in methods:
            runs = frame[(frame["dataset"] == dataset) & (frame["method"] == method)]
            row[method] = _gap_cell(runs, None if h is None else h["entropy"])
            if not runs.empty:
                cost_rows.append(_cost_row(runs, {"dataset": dataset, "method": method}))
        nll_rows.append(row)
    return (
        f"# Toy 2D densities\n\n{caption(frame)}\n\n"
        f"**Test NLL** in nats (lower is better) on {_test_points(frame)}: mean ± standard "
        "deviation over seeds (the mean alone for one seed), and in brackets the gap to the "
        "density's differential entropy H, the lowest expected NLL any model can reach (H is "
        "a Monte-Carlo estimate ± its standard error). Runs that did not finish are left out "
        f"of the mean (see status.md).{convergence_rule(frame)}\n\n"
        f"{_markdown(nll_rows)}{_capped_note(frame, ('dataset', 'method'))}\n\n"
        "**Cost** per method and dataset (means over finished seeds): "
        f"{_COST}; NFE do not apply to discrete flows.\n\n"
        f"{_markdown(cost_rows)}\n"
    )


def _cost_row(runs: pd.DataFrame, keys: dict) -> dict:
    ok = _ok(runs)
    return {
        **keys,
        "seeds ok": f"{len(ok)}/{len(runs)}",
        "NFE fwd": _number(ok["nfe_forward"].mean(), 1),
        "NFE bwd": _number(ok["nfe_backward"].mean(), 1),
        "train NFE/iter": train_nfe_cell(ok),
        "test NFE": _number(ok["test_nfe"].mean(), 1),
        "train time (s)": _seconds(ok["train_seconds"].mean()),
        "ms/iter": _number(ok["seconds_per_iter"].mean() * 1000, 1),
        "params": _DASH if ok.empty else f"{int(ok['params'].iloc[0]):,}",
    }


def train_nfe_cell(ok: pd.DataFrame) -> str:
    """Training NFE per iteration, mean ± sd over training, each averaged over seeds."""
    mean = ok["train_nfe"].mean()
    if math.isnan(mean):
        return _DASH
    spread = (ok["nfe_forward_sd"] ** 2 + ok["nfe_backward_sd"].fillna(0) ** 2) ** 0.5
    return _number(mean, 1) + ("" if spread.isna().all() else f" ± {_number(spread.mean(), 1)}")


def _paper_digest(cited: Citation | None) -> str | None:
    return (
        None
        if cited is None or cited.config is None
        else load_config(cited.config).protocol_digest()
    )


def mnist_table(
    frame: pd.DataFrame, citations: Citations, tolerance: float, budget: list[dict] | None = None
) -> str:
    """``mnist.md``: protocol, our bits/dim with its 95% interval, the published one,
    difference, verdict (:mod:`.verdict`), cost; then the paper budgets (:mod:`.budget`)."""
    frame = frame[frame["family"] == "mnist"]
    if frame.empty:
        return "# MNIST\n\nNo MNIST runs in this profile.\n"
    seeds = sorted(int(s) for s in frame["seed"].unique())
    rows = []
    for method in _order(frame["method"]):
        runs = frame[frame["method"] == method]
        ok, cited = _ok(runs), citations.methods.get(method)
        published = cited.value if cited else None
        judged = judge(runs, published, _paper_digest(cited), seeds, tolerance)
        rows.append(
            {
                "method": method,
                "protocol": " / ".join(_order(runs["protocol"].fillna(_DASH))),
                "D": str(int(runs["dims"].iloc[0])),
                "test bpd": _mean_std(ok["test_bpd"])
                + f" [{len(ok)}/{len(runs)} seed{'s' * (len(runs) != 1)}]"
                + (_DAGGER if hit_cap(ok["converged"]).any() else ""),
                "95% interval": judged.interval,
                "published": _number(published, 2),
                "source": f"{cited.source} [{cited.tag}]"
                if cited and cited.tag
                else (cited.source if cited else _DASH),
                "difference": judged.difference,
                "verdict": judged.label,
                **_cost_row(runs, {}),
            }
        )
    return (
        f"# MNIST\n\n{caption(frame)}\n\n"
        "**Test bits/dim** (lower is better): mean ± standard deviation over finished seeds, "
        "on D = image size² dimensions, next to the published value (config/citations.yaml; "
        "tags as in docs/sources.md: [P] confirmed by a second source, [M] recalled). "
        "**Protocol**: dequantization of the test images (uniform noise, draws per image, or "
        "bin centres, which is not a bound on the discrete likelihood), the trace of the "
        "log-density at test (exact, or Hutchinson's estimate with its probe), the number of "
        "training images (the suite holds out the last `data.mnist.val_size` training images for "
        "model selection: 10,000 in the paper configs, 500 in the reduced ones; "
        "FFJORD and RNODE trained on all 60,000 and selected on test) and the logit's alpha. "
        '**Verdict** (README, "Verdicts"): only runs '
        "whose resolved config, seed aside, is the method's paper config are judged (else "
        "*not comparable*), and only when every seed finished (else *incomplete*); then "
        "*reproduced* when the published value lies in the 95% Student-t interval of our "
        f"mean over seeds (n - 1 degrees of freedom) and within ±{tolerance} bits/dim of it, "
        f"else *better* or *worse than published*.{convergence_rule(frame)} Cost: {_COST}.\n\n"
        f"{_markdown(rows)}{_capped_note(frame, ('method',))}\n\n{budget_table(budget or [])}"
    )


def _hours(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _timed(settings: dict) -> str:
    timed = settings["iterations"] * settings["repeats"]
    return f"{timed} timed iteration{'s' * (timed != 1)} after {settings['warmup']} untimed"


def budget_table(budget: list[dict]) -> str:
    """The paper configs' measured seconds per iteration and projected training time."""
    if not budget:
        return "No paper-budget projection was given to the renderer.\n"
    rows = []
    for row in budget:
        measured = row["status"] == "measured"
        machine = row.get("machine", {})
        load = machine.get("load_average") or {}
        rows.append(
            {
                "method": row["method"],
                "paper config": f"`{row['config']}`",
                "iterations": f"{row['iterations']:,}",
                "batch": str(row.get("batch_size", _DASH)),
                "s/iter": _seconds(row["seconds_per_iteration"]) if measured else row["status"],
                "CPU s/iter": _seconds(row["cpu_seconds_per_iteration"]) if measured else _DASH,
                "projected training (h)": _hours(row["projected_hours"]) if measured else _DASH,
                "measured on": f"{machine['cpu']}, {row['threads']} thread, "
                f"{machine['cpu_count']} cores, load {load['before'][0]:.1f} → "
                f"{load['after'][0]:.1f}, {_timed(machine['settings'])}"
                if measured
                else _DASH,
            }
        )
    return (
        "**Paper budgets** (config/experiments/mnist/*-paper.yaml): median wall-clock "
        "seconds per training iteration of each paper config measured with `python -m "
        "replication bench` at the config's batch size (and the process's CPU seconds, which "
        "a busy machine does not inflate), and the projected time of the config's full training "
        "budget (seconds per iteration x iterations; validation and test not included). "
        "Continuous flows were timed at initialisation, where adaptive solvers need the "
        "fewest function evaluations, so their projection is a lower bound. The machine is "
        "shared: its load (1-minute average, at the start → end of the measurement) says how "
        "busy it was; on a loaded machine a step takes longer. *not measured*: "
        "no benchmark of the current config (too slow or too large for the machine at hand, "
        "with the reason when one was recorded in config/unmeasured.yaml, or the "
        "config changed since). Generated by `python -m replication paper-budget` "
        "(results/timing/paper_budget.json).\n\n"
        f"{_markdown(rows)}\n"
    )


def status_table(frame: pd.DataFrame) -> str:
    """``status.md``: the runs whose status is not ``ok`` (failed, or recovered after diverging:
    see :mod:`replication.status`), or one line saying all finished."""
    failed = frame[frame["status"] != OK]
    head = f"# Run status\n\n{caption(frame)}\n\n"
    if failed.empty:
        return head + f"All {len(frame)} runs finished with status `ok`.\n"
    recovered = int(failed["status"].map(usable).sum())
    if recovered:
        head += (
            f"{recovered} of {len(frame)} runs diverged after their best validation and "
            "recovered: their results (reported in the tables) are those of the weights kept "
            "at that validation.\n\n"
        )
    rows = [
        {
            "dataset": run.dataset,
            "method": run.method,
            "seed": str(run.seed),
            "status": str(run.status),
            "metrics": f"`{run.metrics}`",
        }
        for run in failed.itertuples()
    ]
    unfinished = len(failed) - recovered
    if unfinished:
        head += (
            f"{unfinished} of {len(frame)} runs did not finish: no result of theirs is reported "
            "and their analytic checks are not applicable.\n\n"
        )
    return head + f"Runs whose status is not `ok`:\n\n{_markdown(rows)}\n"


def write_tables(
    frame: pd.DataFrame,
    entropy: dict[str, dict[str, float]],
    citations: Citations,
    out_dir: str | Path,
    tolerance: float = TOLERANCE_BPD,
    budget: list[dict] | None = None,
) -> list[Path]:
    """Render ``toy.md``, ``mnist.md`` and ``status.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    texts = {
        "toy.md": toy_table(frame, entropy),
        "mnist.md": mnist_table(frame, citations, tolerance, budget),
        "status.md": status_table(frame),
    }
    for name, text in texts.items():
        atomic.write_text(out_dir / name, text)
    return [out_dir / name for name in texts]
