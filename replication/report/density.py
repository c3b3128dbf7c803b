"""Log-densities of the toy 2D problems on one fixed grid: learned (from a run's weights) and
true (:func:`replication.datasets.toy2d.log_density`).

Each grid is saved as a small ``.npz`` (log p as float16 on a ``POINTS x POINTS`` grid over
``[-BOUND, BOUND]^2``, zip-compressed with fixed timestamps, so the same numbers give the same
bytes). The figures are drawn from these files alone: re-rendering never needs the weights.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from replication import atomic
from replication.datasets import toy2d
from replication.typed import ConfigError

if TYPE_CHECKING:
    from replication.config import ExperimentConfig

BOUND = 4.0  # the grid covers [-4, 4]^2, as FFJORD's toy figures
POINTS = 128  # grid points per axis
_BATCH = 4096
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def grid() -> torch.Tensor:
    """Grid points ``[POINTS^2, 2]`` in float64, row-major with y varying slowest."""
    axis = torch.linspace(-BOUND, BOUND, POINTS, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def true_log_density(name: str) -> np.ndarray:
    """log p of toy density ``name`` on the grid, ``[POINTS, POINTS]`` (rows are y)."""
    return toy2d.log_density(name, grid()).reshape(POINTS, POINTS).numpy()


def load_run(run_dir: str | Path) -> tuple[torch.nn.Module, ExperimentConfig]:
    """The flow saved in ``run_dir/model.pt``, rebuilt from its saved config (on the CPU, in
    eval mode, float32), and that config."""
    from replication import train

    flow, experiment = train.load_trained(run_dir)
    return flow.float().eval(), experiment


def load_flow(run_dir: str | Path) -> torch.nn.Module:
    """The flow of :func:`load_run` alone."""
    return load_run(run_dir)[0]


@torch.no_grad()
def learned_log_density(flow: torch.nn.Module) -> np.ndarray:
    """log p of ``flow`` on the grid in float32, ``[POINTS, POINTS]``; NaN where it fails."""
    from replication.flows.continuous import SolverFailure

    values = []
    for batch in grid().to(torch.float32).split(_BATCH):
        try:
            values.append(flow.log_prob(batch).double())
        except SolverFailure as failure:  # an unstable model: leave its cells blank
            print(f"warning: solver failure on the density grid: {failure}", file=sys.stderr)
            values.append(torch.full((len(batch),), float("nan"), dtype=torch.float64))
    return torch.cat(values).reshape(POINTS, POINTS).numpy()


def save(path: str | Path, log_density: np.ndarray) -> None:
    """Write ``log_density`` and the grid's extent as a deterministic compressed ``.npz``."""
    arrays = {
        "log_density": np.asarray(log_density, dtype=np.float16),
        "extent": np.array([-BOUND, BOUND, -BOUND, BOUND], dtype=np.float64),
    }

    def write(file: io.BufferedIOBase) -> None:
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array, allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, buffer.getvalue())

    atomic.write_with(path, write)


def load(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """``(log_density [POINTS, POINTS] float32, extent)`` from a file written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"density grid not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        extent = tuple(float(v) for v in data["extent"])
        return data["log_density"].astype(np.float32), extent  # type: ignore[return-value]


def write_run_density(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Evaluate the run's flow on the grid and save it (default ``run_dir/density.npz``)."""
    torch.set_num_threads(1)
    out = Path(out) if out is not None else Path(run_dir) / "density.npz"
    save(out, learned_log_density(load_flow(run_dir)))
    return out


def write_true_density(name: str, out: str | Path) -> Path:
    """Save the true log-density of toy density ``name`` on the grid."""
    save(out, true_log_density(name))
    return Path(out)
