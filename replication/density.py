"""The figure grid of the toy 2D problems: its points, the true log-density on it
(:func:`replication.datasets.toy2d.log_density`) and the file format of a grid of log-densities
(a learned one is evaluated from a run's weights by :func:`replication.evaluate.write_run_density`).

Each grid is saved as a small ``.npz`` (log p as float16 on a ``POINTS x POINTS`` grid over
``[-BOUND, BOUND]^2``, zip-compressed with fixed timestamps, so the same numbers give the same
bytes). The figures are drawn from these files alone: re-rendering never needs the weights.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from replication import atomic
from replication.datasets import toy2d
from replication.typed import ConfigError

BOUND = 4.0  # the grid covers [-4, 4]^2, as FFJORD's toy figures
POINTS = 128  # grid points per axis
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def grid() -> torch.Tensor:
    """Grid points ``[POINTS^2, 2]`` in float64, row-major with y varying slowest."""
    axis = torch.linspace(-BOUND, BOUND, POINTS, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def true_log_density(name: str) -> np.ndarray:
    """log p of toy density ``name`` on the grid, ``[POINTS, POINTS]`` (rows are y)."""
    return toy2d.log_density(name, grid()).reshape(POINTS, POINTS).numpy()


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


def write_true_density(name: str, out: str | Path) -> Path:
    """Save the true log-density of toy density ``name`` on the grid."""
    save(out, true_log_density(name))
    return Path(out)
