"""Train one flow on one dataset with one seed, evaluate it, and write its metrics file.

The loop reads top to bottom: setup, data, model, optimiser, (resume), loop with periodic
validation, final test evaluation with the best-on-validation weights, outputs. Everything a
result depends on is seeded from the run's seed, so the same config gives the same numbers on
the same kind of machine (timings aside); an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from replication import atomic, generators, optim, outdir, precision, provenance
from replication import status as run_status
from replication.config import ExperimentConfig
from replication.datasets import check_files as check_data_files
from replication.datasets import load as load_dataset
from replication.datasets.splits import Dataset, derive_seed
from replication.evaluate import score
from replication.flows import Flow, SolverFailure
from replication.history import History
from replication.images import SAMPLES_FILE, save_blank_grid, save_run_samples
from replication.metrics import assemble
from replication.progress import Progress
from replication.runs import METRICS, WEIGHTS, build_flow

CHECKPOINT = "checkpoint.pt"


def seed_everything(seed: int) -> None:
    """Fix Python's, NumPy's and torch's global generators (model init, Hutchinson probes)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_step(
    flow: Flow, optimizer: torch.optim.Optimizer, batch: torch.Tensor, clip: float | None
) -> dict:
    """One optimiser step on ``batch`` minimising the flow's own objective (:meth:`Flow.loss`),
    with ODE blocks integrating by their training solver."""
    started = time.perf_counter()
    with flow.solving("train"):  # the one place the training solver is used
        loss, stats = flow.loss(batch)
        after_forward, forward_done = flow.evaluations(), time.perf_counter()
        if not torch.isfinite(loss):
            return {"finite": False}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # inside: an adjoint backward solve integrates as its forward did
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(flow.parameters(), clip)
    optimizer.step()
    # A loss that reports no NFE or regulariser (e.g. another objective's) records zeros.
    numbers = {"nfe_forward": 0, "kinetic": 0.0, "jacobian": 0.0}
    numbers |= {key: v.item() if torch.is_tensor(v) else v for key, v in stats.items()}
    return {
        "finite": True,
        **numbers,
        "forward_seconds": forward_done - started,
        "backward_seconds": time.perf_counter() - forward_done,
        "nfe_backward": flow.evaluations() - after_forward,
    }


def record_step(history: History, step: dict, seconds: float) -> None:
    history.iteration_seconds.append(seconds)
    history.losses.append(step["loss"])
    history.nfe_forward.append(step["nfe_forward"])
    history.nfe_backward.append(step["nfe_backward"])
    history.kinetic.append(step["kinetic"])
    history.jacobian.append(step["jacobian"])


def validate(
    flow: Flow, data: object, config: ExperimentConfig, device: torch.device, history: History
) -> bool:
    """Score the validation split; return True when it is the best so far."""
    flow.eval()
    result = score(flow, data.eval_batches("val", config.eval.batch_size), device, data.eval_draws)
    flow.train()
    history.validation_seconds += result.seconds
    history.val_train_seconds.append(sum(history.iteration_seconds))
    since = slice(history.val_curve[-1]["iteration"] if history.val_curve else 0, None)
    history.val_curve.append(
        {
            "iteration": history.iteration,
            "val_nll": result.nll,
            "val_nll_se": result.nll_se,
            "val_nfe": result.nfe_per_batch,  # the evaluation solver's NFE: test NFE over training
            "train_loss": _mean(history.losses[since]),  # the objective's (metrics "objective")
            "nfe_forward": _mean(history.nfe_forward[since]) if history.counts_nfe else None,
            "nfe_backward": _mean(history.nfe_backward[since]) if history.counts_nfe else None,
        }
    )
    if result.nll < history.reference_val - result.nll_se:  # beyond noise: progress
        history.reference_val, history.last_improvement = result.nll, history.iteration
    improved = result.nll < history.best_val
    if improved:
        history.best_val, history.best_iteration = result.nll, history.iteration
    return improved


def converged(history: History, patience: int | None) -> bool:
    """Whether the validation NLL has not improved by more than its standard error for
    ``patience`` iterations (never, without a patience)."""
    return patience is not None and history.iteration - history.last_improvement >= patience


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def run(
    config: ExperimentConfig, out_dir: Path, progress: bool | None = None, overwrite: bool = False
) -> dict:
    """Train, evaluate and write ``out_dir/metrics.json`` and ``out_dir/model.pt``.

    Image runs also write ``out_dir/samples.png``, a grid of samples of the final model. Bad
    input (an unusable ``out_dir``, a model the data shape cannot take, missing data files, a
    folder held by another run or finished with another config unless ``overwrite``) raises
    ConfigError before anything is written.
    """
    outdir.check_out(out_dir)
    # Setup. Seeds and threads first, so everything below is reproducible.
    seed_everything(config.seed)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = provenance.resolve_device(config.device)
    precision.apply(config.precision)  # never the backends' defaults: see precision.py
    if device.type == "cuda":
        # Seeding alone is not deterministic on CUDA; on the CPU the kernels used here are, and
        # the switch would cost every run seconds of start-up (it imports torch._dynamo).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)

    # Model, then data: building first refuses a model the data shape cannot take before any
    # data is read (the data's generators are private, so the order changes no number).
    flow = build_flow(config).to(device).train()
    check_data_files(config.data)
    if not overwrite:  # refuse before touching the folder; checked again once it is held
        outdir.refuse_other_finished(out_dir, config.digest(), overwrite)
    with outdir.hold(out_dir):
        outdir.refuse_other_finished(out_dir, config.digest(), overwrite)
        outdir.remove_stale_temporaries(out_dir)
        data = load_dataset(config.data, config.seed)
        return _train_and_evaluate(config, flow, data, device, out_dir, progress)


def _train_and_evaluate(
    config: ExperimentConfig,
    flow: Flow,
    data: Dataset,
    device: torch.device,
    out_dir: Path,
    progress: bool | None,
) -> dict:
    """The loop and the final evaluation, with the folder held by this run."""
    optimizer = optim.make_optimizer(flow.parameters(), config.train, device)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: optim.learning_rate_factor(config.train, it)
    )
    batches = torch.Generator().manual_seed(derive_seed(config.seed, "batches"))
    history = History(counts_nfe=flow.counts_evaluations())
    best_state = copy.deepcopy(flow.state_dict())

    checkpoint = out_dir / CHECKPOINT
    resumed = resume(checkpoint, config, flow, optimizer, schedule, batches)
    if resumed is not None:
        history, best_state = resumed
    bar = Progress(config, history.iteration, enabled=progress)

    # The loop. Validation at iteration 0 gives a baseline, so "best so far" always exists.
    try:
        if not history.val_curve:
            validate(flow, data, config, device, history)
            best_state = copy.deepcopy(flow.state_dict())
        while history.iteration < config.train.iterations and not history.stop_reason:
            batch = data.train_batch(config.train.batch_size, batches).to(device)
            optim.ramp_momentum(optimizer, config.train, history.iteration)
            started = time.perf_counter()
            step = train_step(flow, optimizer, batch, config.train.grad_clip)
            if not step["finite"]:
                history.status = f"diverged: non-finite loss at iteration {history.iteration + 1}"
                break
            schedule.step()
            record_step(history, step, time.perf_counter() - started)
            history.iteration += 1
            bar.step(step)
            last = history.iteration == config.train.iterations
            if history.iteration % config.train.eval_every == 0 or last:
                if validate(flow, data, config, device, history):
                    best_state = copy.deepcopy(flow.state_dict())
                bar.validated(history)
                if converged(history, config.train.patience):
                    history.stop_reason = (
                        f"converged: no validation improvement larger than its standard error "
                        f"since iteration {history.last_improvement} "
                        f"(patience {config.train.patience})"
                    )
                elif last:
                    history.stop_reason = f"iteration cap {config.train.iterations} reached"
                save_checkpoint(
                    checkpoint, config, flow, optimizer, schedule, batches, history, best_state
                )
    except SolverFailure as failure:
        history.status = f"solver failure at iteration {history.iteration + 1}: {failure}"
    finally:
        bar.close()

    # Final evaluation with the best-on-validation weights; the test split is used only here.
    flow.load_state_dict(best_state)
    flow.eval()
    test = sample_seconds = None
    drawn = False
    phase = "test evaluation"  # named in the status if a solve fails, so it blames the right step
    try:
        test = score(
            flow, data.eval_batches("test", config.eval.batch_size), device, data.eval_draws
        )
        phase, started = "sampling", time.perf_counter()
        flow.sample(config.eval.sample_count)
        sample_seconds = time.perf_counter() - started
        if len(data.shape) == 3:  # image data: a sample grid next to the metrics
            phase = "drawing the sample grid"
            save_run_samples(flow, out_dir / SAMPLES_FILE, config.seed)
            drawn = True
    except SolverFailure as failure:
        history.status += f"; {phase} failed: {failure}"
    if len(data.shape) == 3 and not drawn:
        save_blank_grid(out_dir / SAMPLES_FILE, data.shape)
    metrics = assemble(config, flow, data, history, test, sample_seconds, device)
    metrics["status"] = run_status.derive(metrics)  # "recovered: ..." after a divergence
    atomic.save_torch(out_dir / WEIGHTS, {"config": config.to_dict(), "state_dict": best_state})
    atomic.write_json(out_dir / METRICS, metrics)
    checkpoint.unlink(missing_ok=True)
    return metrics


def save_checkpoint(
    path: Path,
    config: ExperimentConfig,
    flow: Flow,
    optimizer: torch.optim.Optimizer,
    schedule: object,
    batches: torch.Generator,
    history: History,
    best_state: dict,
) -> None:
    atomic.save_torch(
        path,
        {
            "digest": config.digest(),
            "model": flow.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "best_state": best_state,
            "history": vars(history),
            "rng": generators.capture(batches),
        },
    )


def resume(
    path: Path,
    config: ExperimentConfig,
    flow: Flow,
    optimizer: torch.optim.Optimizer,
    schedule: object,
    batches: torch.Generator,
) -> tuple[History, dict] | None:
    """Restore a checkpoint of this exact config; a checkpoint of another config is ignored."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        digest = state["digest"]
        saved = History(**state["history"]) if digest == config.digest() else None
    except Exception as error:  # noqa: BLE001  (any failure to read it means it is damaged)
        kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(kept)
        print(
            f"warning: {path} is damaged ({type(error).__name__}: {error}); moved it to {kept} "
            "and starting afresh",
            file=sys.stderr,
        )
        return None
    if digest != config.digest():
        print(f"ignoring {path}: it belongs to a different configuration", file=sys.stderr)
        return None
    flow.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    generators.restore(state["rng"], batches)
    history = saved
    print(f"resuming from {path} at iteration {history.iteration}", file=sys.stderr)
    return history, state["best_state"]
