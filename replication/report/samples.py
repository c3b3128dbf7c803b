"""Samples of a trained image run, redrawn from its saved weights.

Training already writes ``samples.png`` next to an image run's metrics; this redraws it (or a
grid of another size) on the CPU with the same seeded generator
(:func:`replication.images.save_run_samples`), so the same weights give the same picture.
"""

from __future__ import annotations

from pathlib import Path

import torch

from replication.images import SAMPLE_COUNT, SAMPLES_FILE, save_run_samples
from replication.report.density import load_run


def write_run_samples(
    run_dir: str | Path, out: str | Path | None = None, count: int = SAMPLE_COUNT
) -> Path:
    """Draw ``count`` samples of the run's flow and save them as a PNG grid."""
    torch.set_num_threads(1)
    flow, experiment = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / SAMPLES_FILE
    save_run_samples(flow, out, experiment.seed, count=count)
    return out
