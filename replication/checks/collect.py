"""Gather check records into one ``checks.json`` and render them as ``checks.md``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from replication import atomic
from replication.checks.records import Check, failed
from replication.typed import read_json


def write(path: str | Path, checks: Sequence[Check], commit: str) -> None:
    """Write records as a JSON list, each stamped with the commit that computed it."""
    atomic.write_json(path, [{**check.to_dict(), "commit": commit} for check in checks])


def read(paths: Sequence[str | Path]) -> list[dict]:
    """Every record of every file, in order; a missing file is an error, not a pass."""
    records = []
    for path in paths:
        loaded = read_json(path, "check records file")
        records.extend(loaded if isinstance(loaded, list) else [])
    return records


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.6g}"


def _verdict(record: dict) -> str:
    if record["passed"] is None:
        return record.get("note") or "not applicable"
    return "pass" if record["passed"] else "**FAIL**"


def markdown(records: Sequence[dict], profile: str) -> str:
    """The checks table: case, what is known, expected, measured (+- SE), tolerance, verdict."""
    failures = [r for r in records if failed(r)]
    skipped = [r for r in records if r["passed"] is None]
    commits = sorted({str(r.get("commit", "unknown"))[:12] for r in records})
    rows = [
        [
            r["name"], r["known"], _number(r["expected"]),
            _number(r["measured"]) + (f" ± {_number(r['standard_error'])}"
                                      if r.get("standard_error") else ""),
            _number(r["tolerance"]), _verdict(r),
        ]
        for r in records
    ]  # fmt: skip
    caption = (
        f"Profile `{profile}`: {len(records)} analytic checks, {len(failures)} failed"
        + (f", {len(skipped)} not applicable (checks of failed runs)" if skipped else "")
        + "; computed "
        f"at commit {', '.join(f'`{c}`' for c in commits)}. A check passes when the measured "
        "value lies within the tolerance of the expected one (one-sided for NLL >= entropy); "
        "statistical tolerances are 3.29 standard errors, a false-alarm rate of 1e-3 each."
    )
    headers = ["check", "what is known", "expected", "measured", "tolerance", "result"]
    table = tabulate(rows, headers, tablefmt="github", disable_numparse=True)
    return f"# Analytic checks\n\n{caption}\n\n{table}\n"


def collect(inputs: Sequence[str | Path], out: str | Path, report: str | Path, profile: str) -> int:
    """Merge ``inputs`` into ``out`` and render ``report``; returns the number of failures."""
    records = read(inputs)
    atomic.write_json(out, records)
    atomic.write_text(report, markdown(records, profile))
    return sum(failed(r) for r in records)
