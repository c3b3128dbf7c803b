"""Command line: ``python -m replication COMMAND ...``; ``--help`` on any command explains it.

Every command is listed here, in :data:`COMMANDS`, with the module that defines it (its
arguments and a handler calling one function of the package). The CLI sits on top of the
package: nothing below imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from replication.cli import checks, report, run
from replication.typed import ConfigError

EXIT_CONFIG = 2  # bad input: nothing was trained and nothing written

# Every command of ``python -m replication``, by the module that adds it.
COMMANDS: dict[str, tuple[str, ...]] = {
    "run": ("train", "bench", "gpu-check", "check-profile"),
    "report": ("summarize", "entropy", "density", "samples", "tables", "claims", "benchmarks",
               "figures", "readme", "render", "paper-budget"),
    "checks": ("checks",),  # closed-form | gaussian | determinism | run | collect | verify
}  # fmt: skip
_MODULES = {"run": run, "report": report, "checks": checks}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m replication",
        description="Reference replication suite for normalizing flows: train, evaluate, "
        "benchmark and report every registered method under one protocol.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        _MODULES[module].add_commands(commands)
    return parser


# Output options of every command, and whether each names a folder (else a file).
_OUTPUTS = {"out": False, "out_dir": True, "report": False}


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse an output path that cannot be written before the command does any work."""
    from replication.outdir import check_out

    for name, folder in _OUTPUTS.items():
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            option = "--" + name.replace("_", "-")
            check_out(Path(value), option, folder or args.command in run.FOLDER_OUT)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.checks and not args.entropy:
        parser.error("train --checks needs --entropy")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        _check_outputs(args)
        return handler(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
