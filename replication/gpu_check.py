"""``python -m replication gpu-check``: what must hold on every device, checked on those at hand.

On any machine: the test suite's device-agnostic tests (marker ``device``: every flow's
identities, in float64) run once per available device. On a CUDA machine also:

- **agreement**: every method's ``log_prob`` on the CPU and on the GPU, float64, same weights,
  same inputs, same Hutchinson probes (they are drawn on the CPU on every device). ODE flows
  solve with dopri5 at atol = rtol = 1e-9, so that a step-size choice flipped by rounding moves
  the result far less than the tolerance: |difference| <= 1e-6 + 1e-9 |log p| per example.
- **determinism**: one short toy run per method, trained twice on the GPU: identical metrics
  and bit-identical weights.
- **paper cost**: a few training iterations of every MNIST paper config, seconds per iteration,
  and the projected GPU-hours of the paper profile (iterations x seeds x seconds per iteration).
  ODE flows are timed at initialisation and their NFE grows during training: a lower bound.

Writes ``gpu_check.json`` and ``gpu_check.md`` (the report's README links the latter).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from tabulate import tabulate

from replication import atomic, bench, config, provenance, train
from replication.datasets import toy2d
from replication.datasets.splits import derive_seed
from replication.flows import methods
from replication.runs import WEIGHTS, build_flow

ROOT = Path(__file__).resolve().parent.parent
DEVICE_ENV = "REPLICATION_TEST_DEVICE"  # read by tests/conftest.py's ``device`` fixture
OUT = Path("results/gpu-check")
TOY_CONFIGS = ROOT / "config" / "experiments" / "toy"
MNIST_CONFIGS = ROOT / "config" / "experiments" / "mnist"
PAPER_PROFILE = ROOT / "config" / "profiles" / "paper.yaml"
AGREEMENT_SOLVER = "{method: dopri5, atol: 1.0e-9, rtol: 1.0e-9}"
ABS_TOL, REL_TOL = 1e-6, 1e-9
SHORT_RUN = (  # the determinism runs: seconds each on a GPU
    "train.iterations=20", "train.eval_every=10", "data.train_size=2000", "data.val_size=500",
    "data.test_size=1000", "eval.sample_count=100",
)  # fmt: skip


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def _has_xdist() -> bool:
    return importlib.util.find_spec("xdist") is not None


def device_tests(device: str) -> dict:
    """Run the tests marked ``device`` on ``device`` in a fresh interpreter; their counts."""
    started = time.perf_counter()
    # On the CPU, one test process per core; a GPU is shared best by one process.
    workers = ["-n", "auto"] if device == "cpu" and _has_xdist() else ["-p", "no:xdist"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "device", *workers,
         "-p", "no:cacheprovider", str(ROOT / "tests")],
        cwd=ROOT, env={**os.environ, DEVICE_ENV: device}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error)", summary)}
    return {
        "device": device,
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0) + counts.get("error", 0),
        "ok": result.returncode == 0,
        "seconds": time.perf_counter() - started,
        "summary": summary,
    }


def _experiment(path: Path, *overrides: str) -> config.ExperimentConfig:
    """The config at ``path``; ODE flows evaluate with the tight agreement solver."""
    plain = config.load(path, overrides)
    if "eval_solver" in plain.to_dict()["model"]:
        return config.load(path, (*overrides, f"model.eval_solver={AGREEMENT_SOLVER}"))
    return plain


def _inputs(experiment: config.ExperimentConfig, count: int) -> torch.Tensor:
    if experiment.data.name == "mnist":  # dequantized-looking images; no data files needed
        generator = torch.Generator().manual_seed(0)
        return torch.rand(count, *experiment.data.shape, generator=generator, dtype=torch.float64)
    return toy2d.sample(experiment.data.name, count, seed=0).to(torch.float64)


def log_prob_agreement(device: str, path: Path, count: int = 256) -> dict:
    """Max |log p_cpu - log p_device| of the flow of config ``path``, both in float64."""
    experiment = _experiment(path)
    x = _inputs(experiment, count)
    flow = build_flow(experiment).double()
    with torch.no_grad():
        flow.train().log_prob(x)  # data-dependent initialisation (actnorm), as training does
        flow.eval()
        other = copy.deepcopy(flow).to(device)
        torch.manual_seed(derive_seed(0, "probes"))
        on_cpu = flow.log_prob(x)
        torch.manual_seed(derive_seed(0, "probes"))  # the same probes for the second solve
        on_device = other.log_prob(x.to(device)).cpu()
    gap = (on_device - on_cpu).abs()
    allowed = ABS_TOL + REL_TOL * on_cpu.abs()
    return {
        "config": str(path.relative_to(ROOT)),
        "max_abs_difference": gap.max().item(),
        "max_relative_difference": (gap / on_cpu.abs().clamp_min(1e-300)).max().item(),
        "ok": bool((gap <= allowed).all()),
    }


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / WEIGHTS, map_location="cpu", weights_only=False)


def determinism(device: str, method: str, folder: Path) -> dict:
    """Train the toy config of ``method`` twice on ``device``: same numbers, same weights?"""
    experiment = config.load(TOY_CONFIGS / f"{method}.yaml", (*SHORT_RUN, f"device={device}"))
    runs = [train.run(experiment, folder / f"{method}-{i}", progress=False) for i in (0, 1)]
    drop = ("timing", "provenance")
    numbers = [{k: v for k, v in run.items() if k not in drop} for run in runs]
    first, second = (_weights(folder / f"{method}-{i}")["state_dict"] for i in (0, 1))
    same_weights = first.keys() == second.keys() and all(
        torch.equal(first[key], second[key]) for key in first
    )
    return {
        "method": method,
        "test_nll": runs[0]["test_nll"],
        "identical_metrics": numbers[0] == numbers[1],
        "identical_weights": same_weights,
        "ok": numbers[0] == numbers[1] and same_weights,
    }


def paper_cost(device: str, path: Path, seeds: int, iterations: int = 3) -> dict:
    """Seconds per training iteration of the paper config at ``path`` on ``device`` (the
    benchmark's median of ``iterations`` after one warm-up), and the projected hours of its
    full budget."""
    settings = bench.BenchSettings(batch_size=None, iterations=iterations, repeats=1, warmup=1)
    measured = bench.bench_one(path, settings, device=device)
    per_iteration = measured["iteration_ms"]["median"] / 1000
    budget = measured["resolved"]["train"]["iterations"]
    return {
        "config": str(path.relative_to(ROOT)),
        "method": measured["method"],
        "batch_size": measured["batch_size"],
        "seconds_per_iteration": per_iteration,
        "nfe_per_iteration": measured["nfe_forward"] + measured["nfe_backward"],
        "iterations": budget,
        "seeds": seeds,
        "projected_hours": per_iteration * budget * seeds / 3600,
    }


def _paper_configs() -> tuple[list[Path], int]:
    """The MNIST configs of the paper profile, and its number of seeds."""
    profile = yaml.safe_load(PAPER_PROFILE.read_text())
    paths = [ROOT / entry["config"] for entry in profile["families"]["mnist"]["methods"]]
    return paths, len(profile["families"]["mnist"]["seeds"])


def run(out: Path, timing_iterations: int = 3, devices: list[str] | None = None) -> dict:
    """Every check the devices at hand allow; writes ``out``/gpu_check.json and .md."""
    started = time.perf_counter()
    devices = devices or available_devices()
    report: dict = {"devices": devices, "tests": [device_tests(d) for d in devices]}
    gpu = next((d for d in devices if d != "cpu"), None)
    if gpu is not None:
        toy = [TOY_CONFIGS / f"{m}.yaml" for m in methods("vector")]
        images = [MNIST_CONFIGS / f"{m}-cpu.yaml" for m in methods("image")]
        report["agreement"] = [log_prob_agreement(gpu, path) for path in toy] + [
            log_prob_agreement(gpu, path, count=16) for path in images
        ]
        with tempfile.TemporaryDirectory() as folder:
            report["determinism"] = [determinism(gpu, m, Path(folder)) for m in methods("vector")]
        paths, seeds = _paper_configs()
        report["paper_cost"] = [paper_cost(gpu, p, seeds, timing_iterations) for p in paths]
        report["paper_profile_gpu_hours"] = sum(r["projected_hours"] for r in report["paper_cost"])
    report["seconds"] = time.perf_counter() - started
    report["provenance"] = provenance.record(torch.device(gpu or "cpu"))
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "gpu_check.json", report)
    atomic.write_text(out / "gpu_check.md", markdown(report))
    return report


def _table(rows: list[dict], columns: dict[str, str]) -> str:
    cells = [[row[key] for key in columns] for row in rows]
    return tabulate(cells, list(columns.values()), tablefmt="github", floatfmt=".3g")


_NO_GPU = (
    "No CUDA device here: the CPU-GPU log-prob agreement, GPU determinism and the paper "
    "configs' GPU cost were **not checked**. Run `python -m replication gpu-check` on a machine "
    "with a GPU and commit its output."
)
_COST_NOTE = (
    "Training iterations only. ODE flows are timed at initialisation, and their NFE grows during "
    "training: their hours are lower bounds."
)
_TESTS = {"device": "device", "passed": "passed", "failed": "failed", "seconds": "seconds",
          "ok": "ok"}  # fmt: skip
_AGREEMENT = {"config": "config", "max_abs_difference": "max abs diff",
              "max_relative_difference": "max rel diff", "ok": "ok"}  # fmt: skip
_DETERMINISM = {"method": "method", "test_nll": "test NLL", "identical_metrics": "same metrics",
                "identical_weights": "same weights", "ok": "ok"}  # fmt: skip
_COST = {"config": "config", "batch_size": "batch", "seconds_per_iteration": "s / iteration",
         "nfe_per_iteration": "NFE / iteration", "iterations": "iterations", "seeds": "seeds",
         "projected_hours": "projected GPU-hours"}  # fmt: skip


def _origin(report: dict) -> str:
    where = report["provenance"]
    dirty = " with uncommitted changes" if where["dirty"] else ""
    return (
        f"Run by `python -m replication gpu-check` in {report['seconds']:.0f} s on "
        f"{where['device']['type']} ({where['device']['name']}), commit "
        f"{where['commit'][:12]}{dirty}, torch {where['versions']['torch']}, precision "
        f"{where['precision']['effective']}."
    )


def markdown(report: dict) -> str:
    """The report of one gpu-check run as Markdown."""
    lines = ["# GPU check", "", _origin(report), ""]
    lines += ["## Device-agnostic tests (marker `device`)", "", _table(report["tests"], _TESTS), ""]
    if "agreement" not in report:
        return "\n".join([*lines, _NO_GPU, ""])
    hours = report["paper_profile_gpu_hours"]
    lines += [
        f"## log_prob, CPU against GPU (float64; allowed: {ABS_TOL:g} + {REL_TOL:g} |log p|)",
        "",
        _table(report["agreement"], _AGREEMENT),
        "",
        "## Determinism: each toy method trained twice on the GPU",
        "",
        _table(report["determinism"], _DETERMINISM),
        "",
        "## Cost of the MNIST paper configs",
        "",
        _COST_NOTE,
        "",
        _table(report["paper_cost"], _COST),
        "",
        f"Paper profile, MNIST: about {hours:.0f} GPU-hours on this GPU.",
        "",
    ]
    return "\n".join(lines)
