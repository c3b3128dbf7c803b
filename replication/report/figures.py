"""The report's figures, drawn from small per-run files only (never from weights):

- toy: a grid of densities, one row per toy density and one column per method, after a first
  column with the true density; each learned panel is the run's ``density.npz``;
- MNIST: each method's ``samples.png`` side by side.

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

from replication import atomic
from replication.report import density
from replication.report.samples import SAMPLES_FILE
from replication.status import usable
from replication.typed import ConfigError

DPI = 100
PANEL_INCHES = 1.3
DENSITY_FILE = "density.npz"
TOY_FIGURE = "figures/toy_densities.png"  # relative to the report directory
MNIST_FIGURE = "figures/mnist_samples.png"


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
