"""A trained run as a Python object: re-score, sample or reuse a committed or fresh result.

    >>> from replication import load_run
    >>> run = load_run("results/default/moons/ffjord/seed0")     # needs the run's model.pt
    >>> run.log_prob(x)          # log-density per sample, nats (images: of [0, 1] pixels)
    >>> run.sample(1000)         # samples, without gradients
    >>> run.rsample(64).sum().backward()   # differentiable samples, as in torch.distributions
    >>> run.metrics["test_nll"], run.config.model.method

The flow is rebuilt from the run's own saved config (the exact resolved config it trained with)
and its best-on-validation weights, in evaluation mode, so ``log_prob`` evaluates with the
run's evaluation solver, as its reported test number did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from replication.config import ExperimentConfig
from replication.flows.base import Flow
from replication.train import METRICS, load_trained


@dataclass(frozen=True)
class Run:
    """One trained run: its flow, the config it trained with, and its metrics (when written)."""

    folder: Path
    flow: Flow
    config: ExperimentConfig
    metrics: dict | None

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per sample, shape ``[batch]``."""
        return self.flow.log_prob(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples, without gradients."""
        return self.flow.sample(n, generator)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples that gradients flow through, back to the flow's parameters."""
        return self.flow.rsample(n, generator)


def load_run(folder: str | Path, device: str | torch.device = "cpu") -> Run:
    """The run trained into ``folder`` (its ``model.pt``, and ``metrics.json`` if present), on
    ``device``. Raises :class:`replication.typed.ConfigError` naming the file if the weights are
    missing."""
    folder = Path(folder)
    flow, config = load_trained(folder)
    metrics_path = folder / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return Run(folder, flow.to(device), config, metrics)
