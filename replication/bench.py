"""Speed benchmark: training-iteration cost of each method on fixed configs.

For each config, on one thread (``torch.set_num_threads(1)``): a few warm-up iterations, then
``repeats`` blocks of ``iterations`` training iterations. Each iteration's wall-clock time,
CPU time, forward and backward time and NFE are recorded; each block contributes its median,
and the table reports the median over blocks with the spread (min to max) beside it. Milliseconds per
function evaluation are given two ways: forward time over forward NFE, and the whole
iteration over all NFE (forward plus adjoint backward).

This is a benchmark, not a test: it asserts nothing. Machines are shared and noisy, so compare
configs measured side by side in one run, by their medians.

With ``compile``, each config is timed twice in turn: as training runs it (eager), then with its
training objective compiled by ``torch.compile`` (forward, and backward through AOTAutograd),
whose cost of compiling falls in the warm-up and is reported as the warm-up's seconds. Training
never compiles (README, "Speed benchmark"): this measures what it would gain. With ``versus``
(KEY=VALUE), each config is likewise timed again with that override right after its own
measurement, e.g. the lean training solver against torchdiffeq's.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

from replication import atomic, config, optim, precision, provenance
from replication.datasets import load as load_dataset
from replication.datasets.splits import derive_seed
from replication.flows.augmented import DensityField, RegularisedField
from replication.flows.base import Flow
from replication.flows.continuous import ContinuousFlow, solver_statistics
from replication.runs import build_flow
from replication.train import seed_everything, train_step
from replication.typed import ConfigError


@dataclass(frozen=True)
class BenchSettings:
    batch_size: int | None = 512  # None keeps each config's own batch size
    iterations: int = 20
    repeats: int = 5
    warmup: int = 5
    compile: bool = False  # also time each config with torch.compile, right after eager
    # Also time each config with this KEY=VALUE override, right after its own measurement
    # (e.g. model.train_solver.implementation=torchdiffeq): two settings side by side.
    versus: str | None = None

    def __post_init__(self) -> None:
        bounds = {"iterations": 1, "repeats": 1, "warmup": 0}
        for name, least in bounds.items():
            if getattr(self, name) < least:
                raise ConfigError(f"bench {name} must be >= {least}, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"bench batch size must be >= 1 (or 0 for each config's own), "
                              f"got {self.batch_size}")  # fmt: skip
        if self.versus is not None and "=" not in self.versus:
            raise ConfigError(f"bench versus must be KEY=VALUE, got {self.versus!r}")
        if self.compile and self.warmup < 1:
            raise ConfigError("bench --compile needs --warmup >= 1: compiling happens in the "
                              "first iteration, which must not be timed")  # fmt: skip


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _measure_block(
    flow: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: object,
    experiment: config.ExperimentConfig,
    generator: torch.Generator,
    iterations: int,
    device: torch.device,
) -> dict:
    """Medians over one block of training iterations (each ends in a host sync: the loss is
    read back, so a GPU's queued work is inside the measured time)."""
    rows = []
    for _ in range(iterations):
        batch = data.train_batch(experiment.train.batch_size, generator).to(device)
        before = solver_statistics(flow)
        wall, cpu = time.perf_counter(), time.process_time()
        step = train_step(flow, optimizer, batch, experiment.train.grad_clip)
        step.update(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)
        step.update({k: v - before[k] for k, v in solver_statistics(flow).items()})
        rows.append(step)
    keys = ("wall", "cpu", "forward_seconds", "backward_seconds", "nfe_forward", "nfe_backward")
    medians = {key: statistics.median(row[key] for row in rows) for key in keys}
    # Where the forward evaluations went, per solve, as means (they are small integers).
    solves = sum(row["solves"] for row in rows)
    for key in ("initial", "accepted", "rejected"):
        medians[key] = sum(row[key] for row in rows) / solves if solves else None
    return medians


def _ode_blocks(flow: Flow) -> list[ContinuousFlow]:
    return [m for m in flow.modules() if isinstance(m, ContinuousFlow)]


def block_inputs(flow: Flow, batch: torch.Tensor) -> list[torch.Tensor]:
    """What each ODE block of ``flow`` receives from ``batch`` (a multiscale flow's later
    blocks see fewer dimensions than the batch has), caught on one pass through the flow. The
    pass solves as evaluation does, which reads and writes no training state (a warm-started
    first step)."""
    blocks = _ode_blocks(flow)
    if not blocks:
        return []
    inputs: dict[int, torch.Tensor] = {}
    hooks = [
        block.register_forward_pre_hook(
            lambda module, args, index=index: inputs.setdefault(index, args[0].detach())
        )
        for index, block in enumerate(blocks)
    ]
    try:
        with torch.no_grad():
            flow.log_prob(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return [inputs[index] for index in range(len(blocks))]


def evaluation_ms(flow: Flow, inputs: list[torch.Tensor], repeats: int = 20) -> float | None:
    """Median milliseconds of one isolated evaluation of each ODE block's training field (the
    dynamics with its divergence) at that block's input (:func:`block_inputs`), forward and
    backward, averaged over blocks; None without an ODE."""
    blocks = _ode_blocks(flow)
    if not blocks:
        return None
    costs = []
    for block, x in zip(blocks, inputs, strict=True):
        regularised = bool(block.kinetic_weight or block.jacobian_weight)
        field, extra = (RegularisedField, 2) if regularised else (DensityField, 0)
        with flow.solving("train"):  # the training field: its divergence estimator
            rhs, state = block.right_hand_side(field, x.reshape(len(x), -1), extra)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            rhs(torch.tensor(0.5), state).sum().backward()
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            times.append(time.perf_counter() - started)
        costs.append(statistics.median(times))
    flow.zero_grad(set_to_none=True)
    return 1000 * statistics.fmean(costs)


def bench_one(
    path: Path,
    settings: BenchSettings,
    overrides: tuple[str, ...] = (),
    device: str = "cpu",
    compiled: bool = False,
    variant: str | None = None,
) -> dict:
    """Benchmark the config at ``path`` on ``device`` (the CPU unless gpu-check asks for a
    GPU), its training objective compiled by ``torch.compile`` if ``compiled``, with the
    override ``variant`` (KEY=VALUE) after ``overrides`` if given; returns medians and spreads
    in milliseconds."""
    overrides = (*overrides, variant) if variant else overrides
    load_start = os.getloadavg()
    extra = [f"train.batch_size={settings.batch_size}"] if settings.batch_size else []
    # The data only feeds minibatches here: a small training split is drawn quickly.
    experiment = config.load(
        path, ("data.train_size=10000", "threads=1", *extra, *overrides, f"device={device}")
    )
    target = provenance.resolve_device(experiment.device)
    torch.set_num_threads(1)
    precision.apply(experiment.precision)
    seed_everything(experiment.seed)
    data = load_dataset(experiment.data, experiment.seed)
    flow = build_flow(experiment).to(target).train()
    optimizer = optim.make_optimizer(flow.parameters(), experiment.train, target)
    if compiled:
        flow.objective = torch.compile(flow.objective)
    generator = torch.Generator().manual_seed(derive_seed(experiment.seed, "batches"))
    measure = functools.partial(_measure_block, flow, optimizer, data, experiment, generator)
    warmup_started = time.perf_counter()
    if settings.warmup:
        measure(settings.warmup, target)
    warmup_seconds = time.perf_counter() - warmup_started
    # One isolated evaluation is timed after every block, on the same batch, so that its cost
    # sees the machine as the iterations did (a single measurement caught in a busy moment
    # would skew every overhead ratio); the median over blocks is reported.
    batch = data.train_batch(experiment.train.batch_size, generator).to(target)
    inputs = block_inputs(flow, batch)
    blocks, costs = [], []
    for _ in range(settings.repeats):
        blocks.append(measure(settings.iterations, target))
        costs.append(evaluation_ms(flow, inputs))
    cost = None if costs[0] is None else statistics.median(costs)
    ms = {key: _spread([1000 * b[key] for b in blocks]) for key in ("wall", "cpu")}
    forward_ms = statistics.median(1000 * b["forward_seconds"] for b in blocks)
    nfe_forward = statistics.median(b["nfe_forward"] for b in blocks)
    nfe_total = nfe_forward + statistics.median(b["nfe_backward"] for b in blocks)
    return {
        "config": str(path),
        # The config as a run of it resolves (without the benchmark's own overrides), so that
        # a reader can tell whether a measurement still belongs to the current file.
        "resolved": config.load(path, overrides).to_dict(),
        "method": experiment.model.method,
        "compiled": compiled,
        "variant": variant,  # the extra override of a side-by-side measurement, if any
        # With torch.compile, the warm-up pays the compilation (a cold or a cached start).
        "warmup_seconds": warmup_seconds,
        "batch_size": experiment.train.batch_size,
        "params": sum(p.numel() for p in flow.parameters()),
        "iteration_ms": ms["wall"],
        "cpu_ms": ms["cpu"],
        "forward_ms": forward_ms,
        "backward_ms": statistics.median(1000 * b["backward_seconds"] for b in blocks),
        "nfe_forward": nfe_forward,
        "nfe_backward": statistics.median(b["nfe_backward"] for b in blocks),
        "ms_per_evaluation": forward_ms / nfe_forward if nfe_forward else None,
        "iteration_ms_per_evaluation": (ms["wall"]["median"] / nfe_total if nfe_total else None),
        "evaluations_per_solve": {
            key: statistics.median(b[key] for b in blocks) if blocks[0][key] is not None else None
            for key in ("initial", "accepted", "rejected")
        },
        "evaluation_ms": cost,
        # Iteration time over what its evaluations alone cost: 1 would mean no overhead at all.
        "overhead_ratio": ms["wall"]["median"] / (nfe_total * cost) if cost and nfe_total else None,
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
    }


def _optional(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _per_solve(split: dict) -> str:
    if split["initial"] is None:
        return ""
    return f"{split['initial']:.2f} / {split['accepted']:.2f} / {split['rejected']:.2f}"


def _load(load: dict) -> str:
    return f"{load['start'][0]:.1f}-{load['end'][0]:.1f}"


def _with_spread(values: dict) -> str:
    return f"{values['median']:.2f} ({values['min']:.2f}-{values['max']:.2f})"


def _label(result: dict) -> str:
    """How a side-by-side measurement is told apart from the config's own."""
    if result.get("compiled"):
        return " (compiled)"
    return f" ({result['variant']})" if result.get("variant") else ""


def markdown(results: list[dict], settings: BenchSettings) -> str:
    """The benchmark as a Markdown table with a caption."""
    rows = [
        [
            Path(r["config"]).stem + _label(r), r["method"],
            r["batch_size"], r["params"],
            _with_spread(r["iteration_ms"]),
            f"{r['cpu_ms']['median']:.2f}", f"{r['forward_ms']:.2f}", f"{r['backward_ms']:.2f}",
            f"{r['nfe_forward']:g}", f"{r['nfe_backward']:g}",
            _optional(r["ms_per_evaluation"]),
            _optional(r["iteration_ms_per_evaluation"]),
            _per_solve(r["evaluations_per_solve"]),
            _optional(r["evaluation_ms"]), _optional(r["overhead_ratio"]),
            _load(r["load_average"]),
        ]
        for r in results
    ]  # fmt: skip
    headers = ["config", "method", "batch", "params", "ms/iter (min-max)", "CPU ms/iter",
               "forward ms", "backward ms", "NFE fwd", "NFE bwd", "forward ms/NFE",
               "iteration ms/NFE", "per solve: start evals / accepted / rejected steps",
               "eval ms (fwd+bwd)", "overhead ratio", "load (start-end)"]  # fmt: skip
    caption = (
        "Per solve: evaluations spent before the first step (the initial derivative and, "
        "unless warm-started, the step-size estimate), then accepted and rejected steps (each "
        "step costs the solver's stages, 6 new evaluations for dopri5). eval ms: one isolated "
        "evaluation of the ODE field (dynamics and divergence), forward and backward; overhead "
        "ratio: iteration time / (NFE x eval ms), 1 meaning nothing but evaluations. load: the "
        "machine's 1-minute load average when each config started and ended. "
        f"Training-iteration cost, one thread, median of {settings.repeats} blocks of "
        f"{settings.iterations} iterations after {settings.warmup} warm-up iterations "
        "(spread: min-max of the block medians). forward ms/NFE: forward time per forward "
        "evaluation; iteration ms/NFE: the whole iteration over forward plus backward (adjoint) "
        "evaluations, the figure comparable with a per-evaluation cost measured over a run."
    )
    return caption + "\n\n" + tabulate(rows, headers, tablefmt="github") + "\n"


def cpu_model() -> str | None:
    """The processor's name as Linux reports it (``/proc/cpuinfo``), or None elsewhere."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return None
    for line in info.read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def run(
    paths: list[Path], settings: BenchSettings, out_dir: Path, overrides: tuple[str, ...] = ()
) -> list[dict]:
    """Benchmark every config in turn; write ``bench.json`` and ``bench.md`` to ``out_dir``."""
    results, load_before = [], os.getloadavg()
    variants = [{}]
    if settings.compile:
        variants.append({"compiled": True})
    if settings.versus:
        variants.append({"variant": settings.versus})
    for path in paths:
        for variant in variants:
            results.append(bench_one(path, settings, overrides, **variant))
            print(f"{path}{_label(results[-1])}: {results[-1]['iteration_ms']['median']:.2f} "
                  f"ms/iter, warm-up {results[-1]['warmup_seconds']:.1f} s", flush=True)  # fmt: skip
    record = {
        "settings": vars(settings),
        "results": results,
        "provenance": provenance.record(torch.device("cpu")),
        # The machine is shared: its load (1, 5, 15-minute averages) says how busy it was.
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    atomic.write_json(out_dir / "bench.json", record)
    atomic.write_text(out_dir / "bench.md", markdown(results, settings))
    return results
