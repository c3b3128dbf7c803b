"""``python -m replication checks ...``: compute analytic checks, collect and verify them.

Every computing command writes a JSON list of check records; ``collect`` merges them into the
run's ``checks.json`` and renders ``checks.md``; ``verify`` exits 1 when any check failed, which
fails the pipeline after the report has been written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from replication.typed import ConfigError, at_least, read_json

if TYPE_CHECKING:
    from replication.checks.records import Check


def _single_thread() -> None:
    """The checks' arithmetic is small: one thread is as fast and leaves the other core free."""
    import torch

    torch.set_num_threads(1)


def _write(out: str, checks: list[Check]) -> int:
    from replication.checks import collect
    from replication.provenance import git_commit

    collect.write(out, checks, git_commit()["commit"])
    failed = [check.name for check in checks if check.passed is False]
    print(
        f"wrote {out}: {len(checks)} checks" + (f", FAILED: {', '.join(failed)}" if failed else "")
    )
    return 0


def _closed_form(args: argparse.Namespace) -> int:
    from replication.checks import bits, maps, matching, ode

    _single_thread()

    checks = maps.change_of_variables() + ode.linear_ode() + ode.hutchinson_unbiased()
    checks += matching.flow_matching()
    return _write(args.out, checks + bits.bits_per_dim_checks())


def _gaussian(args: argparse.Namespace) -> int:
    from replication.checks.trained import gaussian_data

    return _write(args.out, [gaussian_data(Path(args.config))])


def _determinism(args: argparse.Namespace) -> int:
    from replication.checks.trained import determinism

    return _write(args.out, [determinism(Path(args.config))])


def entropy_of(entropy_path: str, dataset: str | None) -> dict:
    """The entropy record ``{entropy, se}`` of toy ``dataset`` in the file ``entropy_path``."""
    from replication.report import entropy

    entropies = entropy.read(entropy_path)
    if dataset not in entropies:
        raise ConfigError(f"{entropy_path} has no entropy of {dataset!r}")
    return entropies[dataset]


def run_checks(run: Path, entropy_path: str, grid: int, out: str) -> int:
    """The per-run checks of the trained 2D model in ``run``, written to ``out``: what
    ``checks run`` does, and what ``train --checks`` does in the training job itself."""
    from replication.checks.trained import trained_model

    _single_thread()
    metrics = read_json(run / "metrics.json", "metrics file")
    h = entropy_of(entropy_path, metrics.get("dataset"))
    return _write(out, trained_model(run, h["entropy"], h["se"], grid))


def _run(args: argparse.Namespace) -> int:
    return run_checks(Path(args.run), args.entropy, args.grid, args.out)


def _collect(args: argparse.Namespace) -> int:
    from replication.checks import collect

    failures = collect.collect(args.inputs, args.out, args.report, args.profile)
    print(f"wrote {args.out} and {args.report}: {failures} failed")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from replication.checks import collect
    from replication.checks.records import failed

    records = collect.read([args.checks])
    failures = [r["name"] for r in records if failed(r)]
    skipped = sum(r["passed"] is None for r in records)
    if failures:
        print(f"{len(failures)} analytic checks failed: {', '.join(failures)}")
        return 1
    if skipped:
        print(
            f"all {len(records) - skipped} analytic checks in {args.checks} that could run "
            f"passed ({skipped} not applicable: checks of failed runs)"
        )
    else:
        print(f"all analytic checks in {args.checks} passed")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``checks`` and its subcommands."""
    parser = commands.add_parser(
        "checks",
        help="analytic checks: cases with closed-form answers (see report/checks.md)",
        description="Compute, collect and verify the analytic checks. Each computing command "
        "writes a JSON list of records {name, known, expected, measured, tolerance, passed}.",
    )
    sub = parser.add_subparsers(dest="checks_command", required=True, metavar="CHECK")

    def add(name: str, handler: object, text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=text, description=text)
        command.set_defaults(handler=handler)
        return command

    add(
        "closed-form",
        _closed_form,
        "change of variables per flow family, linear ODE and RNODE "
        "integrals, Hutchinson's bias, flow matching's minimiser and likelihood on Gaussian "
        "data, bits/dim identities",
    ).add_argument("--out", required=True)
    gaussian = add(
        "gaussian",
        _gaussian,
        "train a toy config on a correlated 2D Gaussian and compare its test NLL with the "
        "analytic entropy 1/2 log det(2 pi e Sigma)",
    )
    gaussian.add_argument("--config", required=True, help="a toy experiment config")
    gaussian.add_argument("--out", required=True)
    determinism = add(
        "determinism",
        _determinism,
        "train one small config twice with the same "
        "seed: the metrics must be identical (timings aside)",
    )
    determinism.add_argument("--config", required=True)
    determinism.add_argument("--out", required=True)
    run = add(
        "run",
        _run,
        "a trained 2D model: mass on a grid, inverse round trip, test NLL "
        "not below the data entropy",
    )
    run.add_argument("--run", required=True, help="run folder with metrics.json and model.pt")
    run.add_argument("--entropy", required=True, help="toy entropy records (JSON)")
    run.add_argument(
        "--grid", type=at_least(50), default=400, help="grid points per axis for the mass"
    )
    run.add_argument("--out", required=True)
    gather = add("collect", _collect, "merge check files into checks.json and render checks.md")
    gather.add_argument("inputs", nargs="+", help="check record files")
    gather.add_argument("--profile", required=True)
    gather.add_argument("--out", required=True, help="checks.json to write")
    gather.add_argument("--report", required=True, help="checks.md to write")
    add("verify", _verify, "exit 1 if any check in CHECKS failed").add_argument("checks")
