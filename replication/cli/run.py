"""The running commands of ``python -m replication``: train, bench, gpu-check, check-profile."""

from __future__ import annotations

import argparse
from pathlib import Path

from replication.cli.checks import entropy_of, run_checks
from replication.typed import at_least

# Their --out names a folder (every other command's --out names a file).
FOLDER_OUT = ("train", "bench", "gpu-check")


def _train(args: argparse.Namespace) -> int:
    from replication import config, gpu_slots, train
    from replication.outdir import check_out
    from replication.runs import METRICS

    gpu_slots.claim(args.gpus)  # before anything starts CUDA, which reads the choice once
    experiment = config.load(args.config, tuple(args.set))
    for option in ("density", "checks"):  # unusable output files fail before any training
        if getattr(args, option):
            check_out(Path(getattr(args, option)), f"--{option}", folder=False)
    if args.checks:  # so does an entropy file without this dataset
        entropy_of(args.entropy, experiment.data.name)
    out = Path(args.out)
    metrics = train.run(experiment, out, progress=args.progress, overwrite=args.overwrite)
    print(f"{metrics['status']}: {_result_line(metrics)} -> {out / METRICS}")
    # The figure's density grid and the per-run checks, in this process: as jobs of their own
    # each paid seconds of start-up (torch, the model) again.
    if args.density:
        from replication.evaluate import write_run_density

        print(f"wrote {write_run_density(out, args.density)}")
    if args.checks:
        run_checks(out, args.entropy, args.grid, args.checks)
    return 0


def _result_line(metrics: dict) -> str:
    """The test result as the report gives it: nats per example, and bits/dim for images."""
    if metrics["test_nll"] is None:
        return "no test result"
    line = f"test NLL {metrics['test_nll']:.4f} nats"
    if metrics.get("test_bpd") is not None:
        line += f" = {metrics['test_bpd']:.4f} bits/dim"
    return line


def _bench(args: argparse.Namespace) -> int:
    from replication import bench

    paths = [Path(p) for p in args.configs] or sorted(Path("config/experiments/toy").glob("*.yaml"))
    settings = bench.BenchSettings(
        batch_size=args.batch_size or None,
        iterations=args.iterations,
        repeats=args.repeats,
        warmup=args.warmup,
        compile=args.compile,
        versus=args.versus,
    )
    bench.run(paths, settings, Path(args.out), tuple(args.set))
    print(f"wrote {Path(args.out) / 'bench.md'} and bench.json")
    return 0


def _gpu_check(args: argparse.Namespace) -> int:
    from replication import gpu_check

    report = gpu_check.run(Path(args.out), timing_iterations=args.timing_iterations)
    print(f"wrote {Path(args.out) / 'gpu_check.md'} and gpu_check.json")
    checks = [*report["tests"], *report.get("agreement", []), *report.get("determinism", [])]
    return 0 if all(check["ok"] for check in checks) else 1


def _check_profile(args: argparse.Namespace) -> int:
    from replication import profiles

    for path in args.profiles:
        print(f"{path}: valid, {profiles.check_file(path)} run configs parsed")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register train, bench, gpu-check and check-profile."""
    train = commands.add_parser(
        "train",
        help="train and evaluate one method on one dataset; writes OUT/metrics.json and weights",
        description="Train one flow as the config says, keep the best weights on the validation "
        "split, evaluate them once on the test split and write OUT/metrics.json (numbers and "
        "provenance) and OUT/model.pt. An interrupted run resumes from OUT/checkpoint.pt (a "
        "damaged one is moved aside). A bad config, an unusable --out, or an --out held by "
        "another run exits with code 2 before anything is written.",
    )
    train.add_argument("--config", required=True, help="experiment YAML file (see config/)")
    train.add_argument("--out", required=True, help="output directory for this run")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=1e-3 --set data.name=moons "
        "(repeatable; VALUE is read as YAML)",
    )
    train.add_argument(
        "--gpus",
        type=int,
        default=0,
        metavar="K",
        help="claim K GPUs no other job of this machine holds, and use only those (the pipeline "
        "passes its job's gpu resource; default 0: CUDA_VISIBLE_DEVICES left as it is)",
    )
    train.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: only when stderr is a terminal)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run of another configuration in --out (without it, such a "
        "folder is refused with exit code 2)",
    )
    after = train.add_argument_group(
        "after training (toy runs)",
        "in the same process, what `density --run OUT --out FILE` and `checks run --run OUT "
        "--entropy ENTROPY --grid N --out FILE` write",
    )
    after.add_argument("--density", metavar="FILE", help="write the log-density grid (.npz)")
    after.add_argument("--checks", metavar="FILE", help="write the per-run checks (JSON)")
    after.add_argument("--entropy", metavar="FILE", help="toy entropy records (with --checks)")
    after.add_argument(
        "--grid", type=at_least(50), default=400, help="grid points per axis for the mass check"
    )
    train.set_defaults(handler=_train)

    bench = commands.add_parser(
        "bench",
        help="time training iterations of each method (one thread); writes bench.json and .md",
        description="Per-iteration wall-clock and CPU time, forward/backward time, NFE and "
        "seconds per function evaluation of each config, on one thread, as the median of "
        "several blocks of iterations with their spread. A benchmark, not a test.",
    )
    bench.add_argument(
        "configs", nargs="*", help="experiment configs (default: config/experiments/toy/*.yaml)"
    )
    bench.add_argument(
        "--batch-size", type=at_least(0), default=512, help="0 keeps each config's own"
    )
    bench.add_argument("--iterations", type=at_least(1), default=20, help="iterations per block")
    bench.add_argument("--repeats", type=at_least(1), default=5, help="number of timed blocks")
    bench.add_argument("--warmup", type=at_least(0), default=5, help="untimed iterations first")
    bench.add_argument(
        "--compile",
        action="store_true",
        help="also time each config with its training objective compiled by torch.compile "
        "(measured right after the eager one; the warm-up pays the compilation)",
    )
    bench.add_argument(
        "--versus",
        metavar="KEY=VALUE",
        help="also time each config with this override, right after its own measurement "
        "(e.g. model.train_solver.implementation=torchdiffeq)",
    )
    bench.add_argument("--out", default="results/bench", help="output directory")
    bench.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value in every config",
    )
    bench.set_defaults(handler=_bench)
    gpu_check = commands.add_parser(
        "gpu-check",
        help="check every device at hand: device-agnostic tests; on CUDA also CPU-GPU "
        "agreement, determinism and the paper configs' GPU cost",
        description="Run the device-agnostic tests (marker 'device') on every available device. "
        "With CUDA, also compare every method's log_prob on CPU and GPU in float64, train a short "
        "toy run per method twice on the GPU (identical results?), and time the MNIST paper "
        "configs to project the paper profile's GPU-hours. Writes OUT/gpu_check.json and "
        "OUT/gpu_check.md; exits 1 when a check fails.",
    )
    gpu_check.add_argument("--out", default="results/gpu-check", help="output directory")
    gpu_check.add_argument(
        "--timing-iterations", type=int, default=3, help="timed iterations per paper config"
    )
    gpu_check.set_defaults(handler=_gpu_check)
    check_profile = commands.add_parser(
        "check-profile",
        help="validate pipeline profiles as written, and every training config they imply",
        description="Check each profile file on its own against config/schema (before any "
        "merge with the default profile), then parse the experiment config of every run it "
        "asks for with its overrides, as the training job will. The Snakefile runs the same "
        "checks when it builds the DAG. Exit code 2 names the first problem.",
    )
    check_profile.add_argument("profiles", nargs="+", help="config/profiles/*.yaml files")
    check_profile.set_defaults(handler=_check_profile)
