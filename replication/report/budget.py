"""The paper budgets in hours: measured seconds per iteration times the paper config's iterations.

Input: ``bench.json`` files of ``python -m replication bench`` run on the paper configs with
their own batch sizes (``--batch-size 0``). Output: one JSON file with, per method of the
citations file, the measurement (machine, threads, load, when it belongs to the current config)
and the projected training time, ``seconds_per_iteration * train.iterations``. The MNIST table
reads that file; nothing in it is typed by hand.

The projection counts training iterations only (no validation, no test) and, for continuous
flows, the function evaluations of the first iterations: adaptive solvers need more of them as
training goes on (FFJORD's NFE roughly doubles), so it is a lower bound for those.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from replication import atomic, config
from replication.report.citations import Citations
from replication.typed import ConfigError

NOT_MEASURED = "not measured"


def _measurements(bench_paths: Sequence[str | Path]) -> dict[str, dict]:
    """Every benchmarked config by protocol digest, with its machine's description."""
    found = {}
    for path in bench_paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"benchmark file not found: {path}")
        record = json.loads(path.read_text())
        machine = {
            "cpu": record.get("cpu_model") or record["provenance"]["device"]["name"],
            "cpu_count": record.get("cpu_count"),
            "load_average": record.get("load_average"),
            "commit": record["provenance"]["commit"],
            "settings": record["settings"],
        }
        for result in record["results"]:
            digest = config.parse(result["resolved"]).protocol_digest()
            found[digest] = {"result": result, "machine": machine, "file": path.as_posix()}
    return found


def project(
    citations: Citations, bench_paths: Sequence[str | Path], reasons: dict[str, str] | None = None
) -> list[dict]:
    """Per method with a paper config, in the citations' order: its measured cost and the
    projected paper-budget time; ``reasons`` say why a method could not be measured."""
    measured, reasons = _measurements(bench_paths), reasons or {}
    rows = []
    for method, cited in citations.methods.items():
        if cited.config is None:
            continue
        experiment = config.load(cited.config)
        iterations = experiment.train.iterations
        found = measured.get(experiment.protocol_digest())
        row = {
            "method": method,
            "config": f"{cited.config.parent.name}/{cited.config.name}",
            "iterations": iterations,
        }
        if found is None:
            why = reasons.get(method)
            rows.append({**row, "status": f"{NOT_MEASURED}: {why}" if why else NOT_MEASURED})
            continue
        seconds = found["result"]["iteration_ms"]["median"] / 1000
        rows.append(
            {
                **row,
                "status": "measured",
                "seconds_per_iteration": seconds,
                # CPU time of the process: what the step costs when it has a core to itself.
                "cpu_seconds_per_iteration": found["result"]["cpu_ms"]["median"] / 1000,
                "projected_hours": seconds * iterations / 3600,
                "batch_size": found["result"]["batch_size"],
                "threads": 1,
                "machine": found["machine"],
                "bench_file": found["file"],
            }
        )
    return rows


def read_reasons(path: str | Path | None) -> dict[str, str]:
    """``{method: why it was not measured}`` from a YAML mapping; empty without a file."""
    if path is None:
        return {}
    raw = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(f"{path}: expected a mapping of method to reason")
    return raw


def write(
    citations: Citations,
    bench_paths: Sequence[str | Path],
    out: str | Path,
    reasons: dict[str, str] | None = None,
) -> list[dict]:
    rows = project(citations, bench_paths, reasons)
    atomic.write_json(out, {"paper_budgets": rows})
    return rows


def read(path: str | Path | None) -> list[dict]:
    """The projections written by :func:`write`; empty when ``path`` is None."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"paper budget file not found: {path}")
    return json.loads(path.read_text())["paper_budgets"]
