"""The metrics file of one run: its numbers, and everything needed to trace where they came from.

Continuous-flow fields (NFE, regularisation integrals) are ``null`` for discrete flows, which
evaluate no ODE. ``end`` statistics average the last :data:`END_WINDOW` training iterations.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

import torch

from replication import provenance, solver_choice
from replication.evaluate import Score, bits_per_dim

if TYPE_CHECKING:
    from replication.config import ExperimentConfig
    from replication.datasets.splits import Dataset
    from replication.flows.base import Flow
    from replication.history import History

END_WINDOW = 100


def objective_name(flow: Flow) -> str:
    """What the run's training loss (``val_curve[].train_loss``) measures, e.g. "maximum
    likelihood" (then it is the batch NLL in nats)."""
    objective = flow.objective
    return str(getattr(objective, "name", getattr(objective, "__name__", repr(objective))))


def summarize(values: list[float]) -> dict | None:
    """Mean over training and over its last END_WINDOW iterations, and the standard deviation
    over training (adaptive solvers vary their NFE); None without values."""
    if not values:
        return None
    return {
        "end": statistics.fmean(values[-END_WINDOW:]),
        "mean": statistics.fmean(values),
        "sd": statistics.pstdev(values),
    }


def convergence(history: History, config: ExperimentConfig) -> dict:
    """Whether training stopped by the convergence rule (train.patience) or at its cap."""
    patience = config.train.patience
    reason = history.stop_reason or history.status  # no stop reason: diverged or solver failure
    if patience is None and history.stop_reason:  # without a patience only the cap stops a run
        reason = f"no patience set: trained to the cap of {config.train.iterations} iterations"
    return {
        "converged": history.stop_reason.startswith("converged"),
        "reason": reason,
        "patience": patience,
        "cap": config.train.iterations,
        "last_improvement": history.last_improvement,
        "stopped_at": history.iteration,
    }


def timing(
    history: History, test: Score | None, sample_seconds: float | None, config: ExperimentConfig
) -> dict:
    """Wall-clock seconds of each phase, and throughput in examples per second."""
    seconds = history.iteration_seconds
    per_iter = statistics.median(seconds) if seconds else None
    return {
        "train_seconds": sum(seconds),
        "seconds_per_iter": per_iter,
        "train_examples_per_second": config.train.batch_size / per_iter if per_iter else None,
        "eval_examples_per_second": test.count / test.seconds if test else None,
        "validation_seconds": history.validation_seconds,
        "val_train_seconds": history.val_train_seconds,
        "eval_seconds": test.seconds if test else None,
        "sample_seconds": sample_seconds,
        "sample_count": config.eval.sample_count,
    }


def test_fields(test: Score | None, dims: int, is_image: bool) -> dict:
    """Test NLL in nats per example, and bits/dim for images."""
    if test is None:
        return {"test_nll": None, "test_nll_se": None, "test_bpd": None, "test_bpd_se": None}
    per_dim_bits = dims * math.log(2)
    return {
        "test_nll": test.nll,
        "test_nll_se": test.nll_se,
        "test_bpd": bits_per_dim(test.nll, dims) if is_image else None,
        "test_bpd_se": test.nll_se / per_dim_bits if is_image else None,
        "test_count": test.count,
    }


def assemble(
    config: ExperimentConfig,
    flow: Flow,
    data: Dataset,
    history: History,
    test: Score | None,
    sample_seconds: float | None,
    device: torch.device,
) -> dict:
    """Every field of ``metrics.json``."""
    dims = math.prod(data.shape)
    nfe = history.counts_nfe
    regularized = any(history.kinetic) or any(history.jacobian)
    kinetic, jacobian = summarize(history.kinetic), summarize(history.jacobian)
    return {
        "status": history.status,
        "method": config.model.method,
        "dataset": config.data.name,
        "seed": config.seed,
        **test_fields(test, dims, len(data.shape) == 3),
        "objective": objective_name(flow),
        "iterations": history.iteration,
        "convergence": convergence(history, config),
        "best_iteration": history.best_iteration,
        "best_val_nll": history.best_val,
        "val_curve": history.val_curve,
        "nfe_forward": summarize(history.nfe_forward) if nfe else None,
        "nfe_backward": summarize(history.nfe_backward) if nfe else None,
        "test_nfe": test.nfe_per_batch if test else None,
        # How each phase solved the ODE and why (None without an ODE): the NFE's context.
        "solvers": solver_choice.record(config.model.options),
        "regularization": {"kinetic": kinetic, "jacobian": jacobian} if regularized else None,
        "params": sum(p.numel() for p in flow.parameters()),
        "timing": timing(history, test, sample_seconds, config),
        "data": data.describe(),
        "config": config.to_dict(),
        "config_digest": config.digest(),
        "provenance": provenance.record(device),
    }
