"""The report's figures, drawn from small per-run files only (never from weights):

- toy: a grid of densities, one row per toy density and one column per method, after a first
  column with the true density; each learned panel is the run's ``density.npz``;
- MNIST: each method's ``samples.png`` side by side;
- convergence: validation NLL against training seconds, one panel per toy density (and one for
  MNIST), one line per run, read from the runs' ``metrics.json`` (``val_curve`` and
  ``timing.val_train_seconds``).

Each figure shows the lowest seed that finished. PNGs are written with a fixed size, dpi and
no software/time metadata, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from replication import atomic, density
from replication.images import SAMPLES_FILE
from replication.status import usable
from replication.typed import ConfigError, read_json

DPI = 100
PANEL_INCHES = 1.3
DENSITY_FILE = "density.npz"
TOY_FIGURE = "figures/toy_densities.png"  # relative to the report directory
MNIST_FIGURE = "figures/mnist_samples.png"
CONVERGENCE_FIGURE = "figures/convergence.png"


def shown_runs(frame: pd.DataFrame, family: str) -> dict[tuple[str, str], Path | None]:
    """``{(dataset, method): run folder}`` of the run each figure shows: the lowest seed that
    finished (``ok`` or ``recovered``); None when every seed failed (a blank, labelled panel)."""
    runs = frame[frame["family"] == family].copy()
    runs["failed"] = ~runs["status"].map(usable)
    runs = runs.sort_values(["failed", "seed"], kind="stable")
    first = runs.drop_duplicates(["dataset", "method"])
    return {
        (r.dataset, r.method): None if r.failed else Path(r.metrics).parent
        for r in first.itertuples()
    }


def _failed_panel(axes: object) -> None:
    axes.text(0.5, 0.5, "run failed", ha="center", va="center", fontsize=8,
              transform=axes.transAxes)  # fmt: skip


def save_png(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` as a PNG without metadata that changes between renderings."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic.write_with(path, lambda file: file.write(buffer.getvalue()))


def _density_panel(axes: object, log_density: np.ndarray, extent: tuple) -> None:
    """The density, scaled to its own maximum; a grid without finite values stays blank."""
    log_density = log_density.astype(np.float64)
    if not np.isfinite(log_density).any():
        return
    values = np.exp(log_density - log_density[np.isfinite(log_density)].max())
    axes.imshow(values, extent=extent, origin="lower", cmap="magma", interpolation="nearest")


def _order(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(values))


def toy_figure(frame: pd.DataFrame, truth: Sequence[str | Path], out: str | Path) -> Path:
    """Learned densities (rows: datasets; columns: true density, then methods)."""
    toy = frame[frame["family"] == "toy"]
    if toy.empty:
        raise ConfigError("the summary has no toy runs to draw")
    datasets, methods = _order(toy["dataset"]), _order(toy["method"])
    truth_files = {Path(path).stem: Path(path) for path in truth}
    runs = shown_runs(frame, "toy")
    columns = ["true density", *methods]
    figure = Figure(figsize=(PANEL_INCHES * len(columns), PANEL_INCHES * len(datasets) + 0.3))
    grid = figure.subplots(len(datasets), len(columns), squeeze=False)
    for row, dataset in enumerate(datasets):
        for column, name in enumerate(columns):
            axes = grid[row][column]
            axes.set_xticks([])
            axes.set_yticks([])
            source = truth_files.get(dataset) if column == 0 else _run_file(runs, dataset, name)
            if source is not None:
                _density_panel(axes, *density.load(source))
            elif column > 0 and (dataset, name) in runs:
                _failed_panel(axes)
            if row == 0:
                axes.set_title(name, fontsize=9)
            if column == 0:
                axes.set_ylabel(dataset, fontsize=9)
    figure.subplots_adjust(left=0.06, right=0.99, bottom=0.01, top=1 - 0.3 / figure.get_figheight(),
                           wspace=0.04, hspace=0.04)  # fmt: skip
    save_png(figure, out)
    return Path(out)


def _run_file(runs: dict[tuple[str, str], Path | None], dataset: str, method: str) -> Path | None:
    folder = runs.get((dataset, method))
    return None if folder is None else folder / DENSITY_FILE


def mnist_figure(frame: pd.DataFrame, out: str | Path) -> Path:
    """Each method's ``samples.png`` (the shown run's), side by side with the method's name."""
    runs = shown_runs(frame, "mnist")
    if not runs:
        raise ConfigError("the summary has no MNIST runs to draw")
    figure = Figure(figsize=(2.0 * len(runs), 2.3))
    grid = figure.subplots(1, len(runs), squeeze=False)
    for axes, ((_, method), folder) in zip(grid[0], runs.items(), strict=True):
        if folder is None:
            _failed_panel(axes)
        else:
            path = folder / SAMPLES_FILE
            if not path.is_file():
                raise ConfigError(f"samples not found: {path}")
            axes.imshow(imread(path), cmap="gray", interpolation="nearest")
        axes.set_title(method, fontsize=10)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88, wspace=0.05)
    save_png(figure, out)
    return Path(out)


def validation_curve(metrics_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Training seconds and validation NLL at each validation of a run (empty arrays when its
    metrics file records no curve or no times, as files written before the times were)."""
    metrics = read_json(metrics_path, "metrics file")
    curve = metrics.get("val_curve") or []
    seconds = (metrics.get("timing") or {}).get("val_train_seconds") or []
    if len(curve) != len(seconds):
        return np.empty(0), np.empty(0)
    pairs = [(t, point.get("val_nll")) for t, point in zip(seconds, curve, strict=True)]
    pairs = [(t, v) for t, v in pairs if t is not None and v is not None and np.isfinite(v)]
    array = np.array(pairs, dtype=np.float64).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def _y_range(values: list[np.ndarray], floor: float | None) -> tuple[float, float] | None:
    """From the entropy - 0.05 (else the lowest value) to the 90th percentile of the values,
    so the approach to the optimum is visible rather than the first, very high validations."""
    values = np.concatenate(values) if values else np.empty(0)
    if values.size == 0:
        return None
    low = floor - 0.05 if floor is not None else float(values.min())
    high = float(np.percentile(values, 90))
    pad = 0.05 * max(high - low, 1e-3)
    return (low - (pad if floor is None else 0.0), high + pad) if high > low else None


def _convergence_panel(axes: object, runs: pd.DataFrame, colors: dict, floor: float | None) -> None:
    shown = []
    for run in runs.sort_values(["method", "seed"], kind="stable").itertuples():
        seconds, nll = validation_curve(run.metrics)
        if seconds.size == 0:
            continue
        first = run.seed == runs.loc[runs["method"] == run.method, "seed"].min()
        axes.plot(seconds, nll, color=colors[run.method], linewidth=1.4 if first else 0.7,
                  alpha=1.0 if first else 0.4, label=run.method if first else None)  # fmt: skip
        shown.append(nll)
    if floor is not None:
        axes.axhline(floor, color="black", linestyle="--", linewidth=0.8, label="entropy H")
    limits = _y_range(shown, floor)
    if limits is not None:
        axes.set_ylim(*limits)
    if not shown:
        axes.text(0.5, 0.5, "no validation times recorded", ha="center", va="center",
                  fontsize=8, transform=axes.transAxes)  # fmt: skip


def convergence_figure(
    frame: pd.DataFrame, entropy: dict[str, dict[str, float]], out: str | Path
) -> Path:
    """Validation NLL against training seconds (validation excluded), one panel per dataset,
    one colour per method; the lowest seed solid, the others thin and translucent; the toy
    densities' entropy H (the best possible NLL) dashed."""
    runs = frame[frame["status"].map(usable)]
    datasets = _order(runs.loc[runs["family"] == "toy", "dataset"])
    toy_count = len(datasets)
    datasets += _order(runs.loc[runs["family"] != "toy", "dataset"])
    if not datasets:
        raise ConfigError("the summary has no finished runs to draw")
    palette = [f"C{i}" for i in range(10)]
    colors = {m: palette[i % 10] for i, m in enumerate(_order(frame["method"]))}
    columns = min(3, len(datasets))
    rows = -(-len(datasets) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows))
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index >= len(datasets):
            axes.set_axis_off()
            continue
        dataset = datasets[index]
        floor = (entropy.get(dataset) or {}).get("entropy")
        _convergence_panel(axes, runs[runs["dataset"] == dataset], colors, floor)
        nats = "nats" if index < toy_count else "nats per image"
        axes.set_title(dataset, fontsize=9)
        axes.tick_params(labelsize=7)
        axes.set_xlabel("training seconds", fontsize=7)
        axes.set_ylabel(f"validation NLL ({nats})", fontsize=7)
    legend = {}
    for axes in grid.flat:
        legend.update(zip(*reversed(axes.get_legend_handles_labels()), strict=True))
    labels, handles = list(legend), list(legend.values())
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.07, top=1 - 0.45 / figure.get_figheight(),
                           wspace=0.35, hspace=0.55)  # fmt: skip
    save_png(figure, out)
    return Path(out)
