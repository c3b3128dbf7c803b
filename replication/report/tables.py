"""The report's Markdown tables, rendered from the summary alone (no training, no clock).

- ``toy.md``: test NLL per method and toy density (mean +- std over seeds), the density's
  entropy H (the best NLL possible) and the gap NLL - H; then NFE and training time per run.
- ``mnist.md``: test bits/dim next to the published number (``config/citations.yaml``), their
  difference and a verdict against :data:`TOLERANCE_BPD`; reduced-budget runs get no verdict.
- ``status.md``: every run whose status is not ``ok``, with the reason.

Each table opens with a caption naming the profile, the seeds, the devices and the commits,
all read from the metrics files, so rendering the same summary always gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from replication import atomic
from replication.report import TOLERANCE_BPD
from replication.report.citations import Citations
from replication.status import OK, usable

REDUCED = "reduced budget: not comparable"
_DASH = "–"
_COST = (
    "NFE forward and backward per training iteration at the end of training (backward "
    "evaluations happen in adjoint solves only: 0 with direct backpropagation through the "
    "solver), NFE per test batch, training time and median time per iteration"
)


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
    if len(ok) < len(runs):
        cell += f" [{len(ok)}/{len(runs)} seeds]"
    return cell


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
        "of the mean (see status.md).\n\n"
        f"{_markdown(nll_rows)}\n\n"
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
        "test NFE": _number(ok["test_nfe"].mean(), 1),
        "train time (s)": _seconds(ok["train_seconds"].mean()),
        "ms/iter": _number(ok["seconds_per_iter"].mean() * 1000, 1),
        "params": _DASH if ok.empty else f"{int(ok['params'].iloc[0]):,}",
    }


def verdict(
    ours: float | None, published: float | None, budget: str, dims: int, tolerance: float
) -> tuple[str, str]:
    """``(difference, verdict)`` of our bits/dim against the published one."""
    if budget != "paper":
        return _DASH, REDUCED
    if ours is None or math.isnan(ours):
        return _DASH, "no finished run"
    if published is None:
        return _DASH, "no published number"
    if dims != 784:
        return _DASH, f"not comparable: D = {dims}, published D = 784"
    difference = ours - published
    if abs(difference) <= tolerance:
        return f"{difference:+.3f}", "reproduced"
    return f"{difference:+.3f}", "better than published" if difference < 0 else "not reproduced"


def mnist_table(frame: pd.DataFrame, citations: Citations, tolerance: float) -> str:
    """``mnist.md``: our bits/dim, the published one, difference, verdict, NFE and time."""
    frame = frame[frame["family"] == "mnist"]
    if frame.empty:
        return "# MNIST\n\nNo MNIST runs in this profile.\n"
    rows = []
    for method in _order(frame["method"]):
        runs = frame[frame["method"] == method]
        ok, cited = _ok(runs), citations.methods.get(method)
        published = cited.value if cited else None
        ours = ok["test_bpd"].mean() if not ok.empty else None
        dims = int(runs["dims"].iloc[0])
        difference, judged = verdict(ours, published, runs["budget"].iloc[0], dims, tolerance)
        cost = _cost_row(runs, {})
        rows.append(
            {
                "method": method,
                "D": str(dims),
                "test bpd": _mean_std(ok["test_bpd"]),
                "published": _number(published, 2),
                "source": f"{cited.source} [{cited.tag}]"
                if cited and cited.tag
                else (cited.source if cited else _DASH),
                "difference": difference,
                "verdict": judged,
                **cost,
            }
        )
    return (
        f"# MNIST\n\n{caption(frame)}\n\n"
        "**Test bits/dim** (lower is better): mean ± standard deviation over finished seeds, "
        "on D = image size² dimensions, next to the published value (config/citations.yaml; "
        "tags as in REFERENCES.md: [P] confirmed by a second source, [M] recalled). "
        f"Verdict: within ±{tolerance} bits/dim of the published value is *reproduced*, lower "
        "is *better than published*, higher is *not reproduced*. Runs at a reduced budget "
        f"(CPU configs, smoke test) get no difference and no verdict (*{REDUCED}*). "
        f"Cost: {_COST}.\n\n"
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
) -> list[Path]:
    """Render ``toy.md``, ``mnist.md`` and ``status.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    texts = {
        "toy.md": toy_table(frame, entropy),
        "mnist.md": mnist_table(frame, citations, tolerance),
        "status.md": status_table(frame),
    }
    for name, text in texts.items():
        atomic.write_text(out_dir / name, text)
    return [out_dir / name for name in texts]
