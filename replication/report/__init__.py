"""From metrics files to the report: summary table, toy entropies and density grids, Markdown
tables, figures and the report's README.

Computing is separate from rendering (STYLE.md item 10): training runs write ``metrics.json``;
:mod:`.summary` collects them into one CSV; :mod:`.tables`, :mod:`.figures` and :mod:`.readme`
only read that CSV and small per-run files, so the report re-renders without any weights.
Every module is called by one command of ``python -m replication`` (:mod:`.cli`), which the
Snakemake rules under ``rules/`` run.
"""

TOLERANCE_BPD = 0.02  # MNIST: |ours - published| bits/dim within this counts as reproduced
