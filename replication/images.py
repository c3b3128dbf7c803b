"""Pictures of image models: a grid of samples, written atomically as a PNG."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from replication import atomic
from replication.datasets.splits import derive_seed
from replication.flows.base import Flow

SAMPLES_FILE = "samples.png"
SAMPLE_COUNT = 64  # an 8 x 8 grid


def save_sample_grid(
    flow: Flow,
    path: str | Path,
    count: int = 64,
    generator: torch.Generator | None = None,
) -> None:
    """Draw ``count`` samples of an image flow and write them to ``path`` as a PNG grid.

    Sampling runs in eval mode (the flow's mode is restored afterwards); pixel values are
    clamped to [0, 1], the range of the dequantized data, before 8-bit rounding. The file is
    written beside ``path`` and renamed, so a reader never sees half a picture.
    """
    was_training = flow.training
    flow.eval()
    try:
        samples = flow.sample(count, generator=generator)
    finally:
        flow.train(was_training)
    if samples.dim() != 4:
        raise ValueError(f"expected image samples [N, C, H, W], got shape {tuple(samples.shape)}")
    # Imported here: torchvision's import costs ~2 s (it loads torch's compiler stack), paid
    # otherwise by every pipeline job that imports the training code, image or not.
    from torchvision.utils import save_image

    images = samples.detach().float().cpu().clamp(0, 1)
    rows = math.ceil(math.sqrt(count))
    atomic.write_with(path, lambda file: save_image(images, file, format="png", nrow=rows))


def save_blank_grid(path: str | Path, shape: tuple[int, ...], count: int = SAMPLE_COUNT) -> None:
    """A black grid in place of the samples of a run that could not draw them (a failed ODE
    solve): the pipeline expects the file, and the run status table says why it is blank."""
    from torchvision.utils import save_image

    images = torch.zeros(count, *shape)
    rows = math.ceil(math.sqrt(count))
    atomic.write_with(path, lambda file: save_image(images, file, format="png", nrow=rows))


def save_run_samples(flow: Flow, path: str | Path, seed: int, count: int = SAMPLE_COUNT) -> None:
    """The run's sample grid: ``count`` samples drawn with a generator seeded from ``seed``.

    Training writes it next to the metrics and ``python -m replication samples`` redraws it from
    saved weights; both go through here, so the same weights always give the same picture.
    """
    device = next(flow.parameters()).device
    generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "samples"))
    with torch.no_grad():
        save_sample_grid(flow, path, count=count, generator=generator)
