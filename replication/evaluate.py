"""Evaluation: scoring a flow on held-out data (per-example negative log-likelihood, its mean
and standard error, and the function evaluations (NFE) a continuous flow spent doing it), and
evaluating a saved run, loaded by :func:`replication.runs.load_run`: its log-density on the
toy figure grid and its image samples. The report reads only the files written here."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from replication import density
from replication.flows import Flow, SolverFailure
from replication.images import SAMPLE_COUNT, SAMPLES_FILE, save_run_samples
from replication.runs import load_run

DENSITY_FILE = "density.npz"
_GRID_BATCH = 4096


@dataclass(frozen=True)
class Score:
    """Negative log-likelihood in nats per example over a whole split."""

    nll: float
    nll_se: float  # standard error of the mean: std / sqrt(n)
    count: int
    nfe_per_batch: float | None  # mean forward NFE per batch; None for discrete flows
    seconds: float


def mean_and_standard_error(values: Tensor) -> tuple[float, float]:
    values = values.double()
    if len(values) < 2:
        return values.mean().item(), math.nan
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


@torch.no_grad()
def score(flow: Flow, batches: Iterable[Tensor], device: torch.device, draws: int = 1) -> Score:
    """Evaluate -log p(x) on every batch, in eval mode, ODE blocks integrating with their
    evaluation solver (whatever phase the caller is in: a score is always accurate).

    With ``draws > 1``, each group of ``draws`` consecutive batches holds the same examples
    (e.g. under independent dequantization noise): their NLLs are averaged per example before
    the mean and standard error are taken, so the error counts examples, not draws.
    """
    started = time.perf_counter()
    losses, evaluations = [], []
    with flow.solving("evaluate"):
        for batch in batches:
            before = flow.evaluations()
            losses.append(-flow.log_prob(batch.to(device)).double().cpu())
            evaluations.append(flow.evaluations() - before)
    groups = [torch.stack(losses[i : i + draws]).mean(0) for i in range(0, len(losses), draws)]
    nll = torch.cat(groups)
    mean, se = mean_and_standard_error(nll)
    nfe = sum(evaluations) / len(evaluations) if any(evaluations) else None
    return Score(mean, se, len(nll), nfe, time.perf_counter() - started)


def bits_per_dim(nll_nats: float, dims: int) -> float:
    """Bits per dimension of 8-bit data from the NLL (nats) of its dequantized version scaled
    to [0, 1]^D: bpd = (nll + D ln 256) / (D ln 2) = nll / (D ln 2) + 8."""
    return nll_nats / (dims * math.log(2)) + 8.0


@torch.no_grad()
def learned_log_density(flow: Flow) -> np.ndarray:
    """log p of ``flow`` on the figure grid in float32, ``[POINTS, POINTS]``; NaN where the
    solver fails."""
    values = []
    for batch in density.grid().to(torch.float32).split(_GRID_BATCH):
        try:
            values.append(flow.log_prob(batch).double())
        except SolverFailure as failure:  # an unstable model: leave its cells blank
            print(f"warning: solver failure on the density grid: {failure}", file=sys.stderr)
            values.append(torch.full((len(batch),), float("nan"), dtype=torch.float64))
    return torch.cat(values).reshape(density.POINTS, density.POINTS).numpy()


def write_run_density(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Evaluate the run's flow (float32, CPU) on the grid and save it (default
    ``run_dir/density.npz``)."""
    torch.set_num_threads(1)
    out = Path(out) if out is not None else Path(run_dir) / DENSITY_FILE
    density.save(out, learned_log_density(load_run(run_dir).flow.float()))
    return out


def write_run_samples(
    run_dir: str | Path, out: str | Path | None = None, count: int = SAMPLE_COUNT
) -> Path:
    """Redraw ``count`` samples of an image run from its saved weights on the CPU, with the
    seeded generator training used (:func:`replication.images.save_run_samples`), so the same
    weights give the same picture; saved as a PNG grid (default ``run_dir/samples.png``)."""
    torch.set_num_threads(1)
    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / SAMPLES_FILE
    save_run_samples(run.flow, out, run.config.seed, count=count)
    return out
