"""Scoring a flow on held-out data: per-example negative log-likelihood, its mean and standard
error, and the function evaluations (NFE) a continuous flow spent doing it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from replication.flows.base import Flow


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
    """Evaluate -log p(x) on every batch; the flow should be in eval mode.

    With ``draws > 1``, each group of ``draws`` consecutive batches holds the same examples
    (e.g. under independent dequantization noise): their NLLs are averaged per example before
    the mean and standard error are taken, so the error counts examples, not draws.
    """
    started = time.perf_counter()
    losses, evaluations = [], []
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
