"""The report's commands of ``python -m replication``: each calls one function of this package.

The Snakemake rules (``rules/*.smk``) run these commands; every input and output is an
explicit path, so a rule states exactly what a command reads and writes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from replication.report import TOLERANCE_BPD
from replication.typed import ConfigError, at_least

Handler = Callable[[argparse.Namespace], int]


def _summarize(args: argparse.Namespace) -> int:
    from replication.report import summary

    budgets = {}
    for assignment in args.budget:
        family, _, budget = assignment.partition("=")
        if budget not in ("paper", "reduced"):
            raise ConfigError(f"--budget {assignment!r}: expected FAMILY=paper or FAMILY=reduced")
        budgets[family] = budget
    values = None
    if args.entropy:
        from replication.report import entropy

        values = entropy.read(args.entropy)
    frame = summary.summarize(args.metrics, args.profile, budgets, values)
    summary.write(frame, args.out)
    print(f"wrote {args.out}: {len(frame)} runs")
    return 0


def _entropy(args: argparse.Namespace) -> int:
    from replication.datasets import toy2d
    from replication.report import entropy

    values = entropy.write(args.datasets or toy2d.NAMES, args.out)
    print(f"wrote {args.out}: entropies of {', '.join(values) or 'no datasets'}")
    return 0


def _density(args: argparse.Namespace) -> int:
    from replication import density, evaluate

    if (args.run is None) == (args.dataset is None):
        raise ConfigError("give exactly one of --run DIR and --dataset NAME")
    if args.run is not None:
        out = evaluate.write_run_density(args.run, args.out)
    elif args.out is None:
        raise ConfigError("--dataset needs --out FILE")
    else:
        out = density.write_true_density(args.dataset, args.out)
    print(f"wrote {out}")
    return 0


def _samples(args: argparse.Namespace) -> int:
    from replication.evaluate import write_run_samples

    print(f"wrote {write_run_samples(args.run, args.out, args.count)}")
    return 0


def _tables(args: argparse.Namespace) -> int:
    from replication.report import budget, citations, entropy, summary, tables

    written = tables.write_tables(
        summary.read(args.summary),
        entropy.read(args.entropy),
        citations.load(args.citations, "mnist"),
        args.out_dir,
        args.tolerance,
        budget.read(args.paper_budget),
    )
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def _claims(args: argparse.Namespace) -> int:
    from replication.report import claims, summary

    print(f"wrote {claims.write(summary.read(args.summary), args.out)}")
    return 0


def _benchmarks(args: argparse.Namespace) -> int:
    from replication.report import benchmarks, summary

    print(f"wrote {benchmarks.write(summary.read(args.summary), args.out, args.bench)}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from replication.report import figures, summary

    frame = summary.read(args.summary)
    if args.kind == "toy":
        figures.toy_figure(frame, args.truth, args.out)
    elif args.kind == "convergence":
        from replication.report import entropy

        values = entropy.read(args.entropy) if args.entropy else {}
        figures.convergence_figure(frame, values, args.out)
    else:
        figures.mnist_figure(frame, args.out)
    print(f"wrote {args.out}")
    return 0


def _readme(args: argparse.Namespace) -> int:
    from replication.report import readme, summary

    frame = summary.read(args.summary)
    readme.write(frame, args.out, args.summary, args.table, args.figure)
    print(f"wrote {args.out}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from replication.report.render import render_report

    written = render_report(
        args.summary, args.entropy, args.citations, args.truth, args.out_dir, args.tolerance,
        args.checks, args.paper_budget, args.bench,
    )  # fmt: skip
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def _paper_budget(args: argparse.Namespace) -> int:
    from replication.report import budget, citations

    cited = citations.load(args.citations, "mnist")
    rows = budget.write(cited, args.bench, args.out, budget.read_reasons(args.unmeasured))
    measured = [row["method"] for row in rows if row["status"] == "measured"]
    print(f"wrote {args.out}: measured {', '.join(measured) or 'none'} of {len(rows)} configs")
    return 0


def _add(
    commands: argparse._SubParsersAction, name: str, handler: Handler, summary: str, text: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=text)
    parser.set_defaults(handler=handler)
    return parser


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register summarize, entropy, density, samples, tables, claims, benchmarks, figures,
    readme, render and paper-budget."""
    summarize = _add(
        commands, "summarize", _summarize,
        "collect metrics.json files into one summary CSV (one row per run)",
        "Read each run's metrics.json and write one CSV row per run: profile, dataset, method, "
        "seed, status, budget, test NLL / bits/dim with standard errors, NFE at the end of "
        "training, test NFE, timings, parameters, and provenance (commit, device, versions, "
        "config digest, metrics file); with --entropy, each toy run's training seconds to "
        "reach validation NLL <= entropy + 0.03 nats. Values that do not apply are empty cells.",
    )  # fmt: skip
    summarize.add_argument("metrics", nargs="+", help="metrics.json files, in table order")
    summarize.add_argument("--profile", required=True, help="profile name for the CSV")
    summarize.add_argument(
        "--budget", action="append", default=[], metavar="FAMILY=BUDGET",
        help="budget of a data family, paper or reduced (e.g. toy=reduced); repeatable",
    )  # fmt: skip
    summarize.add_argument(
        "--entropy", help="toy entropies JSON: sets each toy run's time-to-target threshold"
    )
    summarize.add_argument("--out", required=True, help="summary CSV to write")

    entropy = _add(
        commands, "entropy", _entropy,
        "differential entropies of toy densities (the best possible test NLL) as JSON",
        "Monte-Carlo estimate of each toy density's entropy H = -E[log p(X)] in nats with its "
        "standard error, written as JSON {dataset: {entropy, se}}.",
    )  # fmt: skip
    entropy.add_argument("datasets", nargs="*", help="toy densities (default: all eight)")
    entropy.add_argument("--out", required=True, help="JSON file to write")

    density = _add(
        commands, "density", _density,
        "log-density of a trained toy run (or of the true density) on the figure grid",
        "Evaluate log p on a fixed grid over [-4, 4]^2 and save it as a small .npz for the "
        "figures: --run DIR loads DIR/model.pt (default output DIR/density.npz); --dataset NAME "
        "uses the exact density of that toy problem.",
    )  # fmt: skip
    density.add_argument("--run", help="run folder holding model.pt")
    density.add_argument("--dataset", help="toy density whose true log-density to save")
    density.add_argument("--out", help="output .npz")

    samples = _add(
        commands, "samples", _samples,
        "draw a grid of samples of a trained image run (for the MNIST figure)",
        "Load DIR/model.pt on the CPU and save COUNT samples as a PNG grid (default "
        "DIR/samples.png), drawn with a generator seeded from the run's seed.",
    )  # fmt: skip
    samples.add_argument("--run", required=True, help="run folder holding model.pt")
    samples.add_argument("--out", help="PNG to write (default RUN/samples.png)")
    samples.add_argument("--count", type=at_least(1), default=64, help="number of samples")

    tables = _add(
        commands, "tables", _tables,
        "render toy.md, mnist.md and status.md from the summary",
        "Render the report's Markdown tables from the summary CSV, the toy entropies and the "
        "citations file; deterministic (nothing but those files is read).",
    )  # fmt: skip
    tables.add_argument("--summary", required=True, help="summary CSV")
    tables.add_argument("--entropy", required=True, help="toy entropies JSON")
    tables.add_argument("--citations", required=True, help="published numbers YAML")
    tables.add_argument("--out-dir", required=True, help="report directory")
    tables.add_argument(
        "--tolerance", type=float, default=TOLERANCE_BPD,
        help=f"bits/dim within which a result counts as reproduced (default {TOLERANCE_BPD})",
    )  # fmt: skip
    tables.add_argument("--paper-budget", help="paper budget projections (paper-budget's JSON)")

    claims = _add(
        commands, "claims", _claims,
        "test the papers' claims (RNODE vs FFJORD cost, FFJORD vs discrete flows, NFE growth)",
        "Render claims.md from the summary CSV: one row per published claim with the numbers "
        "that test it, the test in words and a verdict (holds, does not hold, or not testable "
        "at this budget, with the reason). Deterministic.",
    )  # fmt: skip
    claims.add_argument("--summary", required=True, help="summary CSV")
    claims.add_argument("--out", required=True, help="claims.md to write")

    benchmarks = _add(
        commands, "benchmarks", _benchmarks,
        "render benchmarks.md: cost per iteration, NFE and time to target per method",
        "Render benchmarks.md from the summary CSV: per method, median ms per training "
        "iteration, training NFE per iteration, and time to target (validation NLL <= entropy "
        "+ 0.03 nats) on 8gaussians and rings; with --bench, the toy benchmark's evaluation "
        "cost and overhead ratio, and its provenance. Deterministic.",
    )  # fmt: skip
    benchmarks.add_argument("--summary", required=True, help="summary CSV")
    benchmarks.add_argument("--bench", help="toy bench.json of `python -m replication bench`")
    benchmarks.add_argument("--out", required=True, help="benchmarks.md to write")

    figures = _add(
        commands, "figures", _figures,
        "draw the toy density grid, the MNIST samples or the convergence figure",
        "toy: true and learned densities (rows: datasets, columns: methods) from the runs' "
        "density.npz files; mnist: each method's samples.png; convergence: validation NLL "
        "against training seconds per dataset, from the runs' metrics.json files (with "
        "--entropy, each toy density's entropy as a floor). Deterministic PNG output.",
    )  # fmt: skip
    figures.add_argument("--kind", required=True, choices=("toy", "mnist", "convergence"))
    figures.add_argument("--summary", required=True, help="summary CSV")
    figures.add_argument("--truth", nargs="*", default=[], help="true densities, NAME.npz")
    figures.add_argument("--entropy", help="toy entropies JSON (convergence figure)")
    figures.add_argument("--out", required=True, help="PNG to write")

    readme = _add(
        commands, "readme", _readme,
        "write the report's README (what was run, links, how to cite)",
        "Write the README of a report: profile, seeds, devices, commits and versions of the "
        "runs, links to every table and figure, and how to cite each number.",
    )  # fmt: skip
    readme.add_argument("--summary", required=True, help="summary CSV")
    readme.add_argument("--out", required=True, help="README.md to write")
    readme.add_argument("--table", nargs="*", default=[], type=Path, help="tables to link")
    readme.add_argument("--figure", nargs="*", default=[], type=Path, help="figures to show")

    render = _add(
        commands, "render", _render,
        "re-render a whole report (tables, figures, README) from existing results",
        "Run tables, figures and readme in one go from the summary CSV, the toy entropies, "
        "the true-density grids and the runs' figure files: no weights are read, nothing is "
        "trained. The report directory gets toy.md, mnist.md, status.md, claims.md, "
        "benchmarks.md, figures/ and README.md.",
    )  # fmt: skip
    render.add_argument("--summary", required=True, help="summary CSV")
    render.add_argument("--entropy", required=True, help="toy entropies JSON")
    render.add_argument("--citations", required=True, help="published numbers YAML")
    render.add_argument("--truth", nargs="*", default=[], help="true densities, NAME.npz")
    render.add_argument("--out-dir", required=True, help="report directory")
    render.add_argument("--tolerance", type=float, default=TOLERANCE_BPD, help="as for tables")
    render.add_argument("--checks", help="the analytic checks' checks.json, rendered as checks.md")
    render.add_argument("--paper-budget", help="paper budget projections (paper-budget's JSON)")
    render.add_argument("--bench", help="toy bench.json for benchmarks.md (optional)")

    paper_budget = _add(
        commands, "paper-budget", _paper_budget,
        "project each paper config's training time from benchmark files",
        "Match each benchmarked config (bench.json of `python -m replication bench "
        "--batch-size 0` on the paper configs) to the paper config of each method in the "
        "citations file by protocol digest, and write seconds per iteration and the projected "
        "hours of the full budget (seconds per iteration x train.iterations) as JSON. A paper "
        "config without a matching measurement is listed as not measured.",
    )  # fmt: skip
    paper_budget.add_argument("--bench", nargs="*", default=[], help="bench.json files")
    paper_budget.add_argument("--citations", required=True, help="published numbers YAML")
    paper_budget.add_argument(
        "--unmeasured", help="YAML mapping method -> why its paper config was not measured"
    )
    paper_budget.add_argument("--out", required=True, help="JSON file to write")
