"""Render a whole report (tables, figures, README) from committed results, without weights.

The pipeline renders the same files one rule at a time; this is the one-call version the
``render`` rule runs, so a fresh clone can check that the committed report is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from replication import atomic
from replication.checks import collect
from replication.report import (
    benchmarks,
    budget,
    citations,
    claims,
    entropy,
    figures,
    readme,
    summary,
    tables,
)


def render_report(
    summary_path: str | Path,
    entropy_path: str | Path,
    citations_path: str | Path,
    truth: Sequence[str | Path],
    out_dir: str | Path,
    tolerance: float,
    checks_path: str | Path | None = None,
    budget_path: str | Path | None = None,
    bench_path: str | Path | None = None,
) -> list[Path]:
    """Write every table (claims.md, benchmarks.md with the toy benchmark ``bench_path`` if
    given, and the checks table too, given ``checks_path``), the figures of the families that
    have runs, and the README."""
    out_dir = Path(out_dir)
    frame = summary.read(summary_path)
    cited = citations.load(citations_path, "mnist")
    entropies = entropy.read(entropy_path)
    written = tables.write_tables(
        frame, entropies, cited, out_dir, tolerance, budget.read(budget_path)
    )
    written.append(claims.write(frame, out_dir / "claims.md"))
    written.append(benchmarks.write(frame, out_dir / "benchmarks.md", bench_path))
    if checks_path is not None:
        profile = str(frame["profile"].iloc[0])
        records = collect.read([checks_path])
        written.append(out_dir / "checks.md")
        atomic.write_text(written[-1], collect.markdown(records, profile))
    drawn = []
    if (frame["family"] == "toy").any():
        drawn.append(figures.toy_figure(frame, truth, out_dir / figures.TOY_FIGURE))
    if (frame["family"] == "mnist").any():
        drawn.append(figures.mnist_figure(frame, out_dir / figures.MNIST_FIGURE))
    drawn.append(figures.convergence_figure(frame, entropies, out_dir / figures.CONVERGENCE_FIGURE))
    readme_path = readme.write(frame, out_dir / "README.md", summary_path, written, drawn)
    return [*written, *drawn, readme_path]
