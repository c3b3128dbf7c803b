"""A trained run as a Python object: re-score, sample or reuse a committed or fresh result.

    >>> from replication import load_run
    >>> run = load_run("results/default/moons/ffjord/seed0")     # needs the run's model.pt
    >>> run.log_prob(x)          # log-density per sample, nats (images: of [0, 1] pixels)
    >>> run.sample(1000)         # samples, without gradients
    >>> run.rsample(64).sum().backward()   # differentiable samples, as in torch.distributions
    >>> run.metrics["test_nll"], run.config.model.method

This is the one loader of saved weights: training, the checks and the report's evaluations all
rebuild a run here. The flow is rebuilt from the run's own saved config (the exact resolved
config it trained with) and its best-on-validation weights, in evaluation mode, so ``log_prob``
evaluates with the run's evaluation solver, as its reported test number did, unless the caller
names another one (``eval_solver``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from replication.config import ExperimentConfig
from replication.config import parse as parse_config
from replication.datasets.splits import derive_seed
from replication.flows import Flow, build_from_options
from replication.flows.ode import SolverOptions
from replication.typed import ConfigError

WEIGHTS = "model.pt"  # {"config": the resolved config, "state_dict": best-on-validation weights}
METRICS = "metrics.json"


def build_flow(config: ExperimentConfig) -> Flow:
    """The configured flow, built from its parsed options and initialised from the run's seed."""
    torch.manual_seed(derive_seed(config.seed, "model"))
    return build_from_options(config.model.method, config.data.shape, config.model.options)


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


def _read_weights(folder: Path) -> tuple[dict, dict]:
    path = folder / WEIGHTS
    if not path.is_file():
        raise ConfigError(f"weights not found: {path} (train the run first)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        return saved["config"], saved["state_dict"]
    except Exception as error:  # noqa: BLE001  (any failure to read it means it is damaged)
        raise ConfigError(
            f"weights file {path} is damaged ({type(error).__name__}: {error}); train the run again"
        ) from None


def _with_options(config: ExperimentConfig, **changes: object) -> ExperimentConfig:
    """``config`` with the model options in ``changes`` replaced; options a method does not
    have (a discrete flow's solver or NFE ceiling) are left out."""
    options = config.model.options
    names = {f.name for f in dataclasses.fields(options)}
    applicable = {key: value for key, value in changes.items() if key in names}
    if not applicable:
        return config
    model = dataclasses.replace(config.model, options=dataclasses.replace(options, **applicable))
    return dataclasses.replace(config, model=model)


def load_run(
    folder: str | Path,
    device: str | torch.device = "cpu",
    eval_solver: SolverOptions | None = None,
    max_nfe: int | None = None,
) -> Run:
    """The run trained into ``folder`` (its ``model.pt``, and ``metrics.json`` if present), on
    ``device``, in eval mode; its ODE blocks integrate with the evaluation solver unless a
    caller says ``with run.flow.solving("train")``. ``eval_solver`` replaces the run's
    evaluation solver and ``max_nfe`` its ceiling on evaluations per solve (methods without an
    ODE ignore both). Raises :class:`replication.typed.ConfigError` naming the file if the
    weights are missing or damaged."""
    folder = Path(folder)
    resolved, state = _read_weights(folder)
    config = parse_config(resolved)
    changes = {"eval_solver": eval_solver, "max_nfe": max_nfe}
    config = _with_options(config, **{k: v for k, v in changes.items() if v is not None})
    flow = build_flow(config)
    flow.load_state_dict(state)
    metrics_path = folder / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return Run(folder, flow.eval().to(device), config, metrics)
