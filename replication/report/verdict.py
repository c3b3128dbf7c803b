"""The MNIST verdict: does our mean bits/dim over seeds reproduce the published number?

A method's runs are judged only when all of these hold, in this order (the first that fails
is the verdict):

1. the paper reports a number (else *no published number*);
2. every run's protocol digest (:meth:`replication.config.ExperimentConfig.protocol_digest`:
   the resolved config but for seed, device, threads and data location) equals the paper
   config's, so a reduced or edited config never gets a verdict (*not comparable*);
3. every seed of the profile finished (*incomplete*: a failed or missing seed counts, so a
   mean of the lucky seeds is never judged);
4. there are at least two seeds, the fewest an interval can be computed from (*incomplete*).

Then, with our test bits/dim x_1..x_n over the n seeds, mean m and sample standard
deviation s, the 95% confidence interval of the mean is the Student-t interval

    m +- t(0.975, n - 1) * s / sqrt(n),

and the run *reproduces* the published value p when p lies inside it **and**
|m - p| <= 0.02 bits/dim; otherwise it is *better* (m < p) or *worse* (m > p) than published.

Why the seeds' spread and not the per-run standard errors: every seed is evaluated on the same
10,000 test images the paper used, so the image-to-image variation behind a run's standard
error is shared by all seeds and by the published number; it does not make them differ. What
does differ between seeds, and between our runs and the paper's, is training (initialisation,
batches, probes) and the dequantization noise at test, and the spread over seeds measures
exactly that. Adding the per-run errors would widen the interval for a variation the comparison
does not have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import pandas as pd

from replication.report import TOLERANCE_BPD
from replication.status import usable

CONFIDENCE = 0.95
_DASH = "–"


@dataclass(frozen=True)
class Verdict:
    """A method's judgement, with the numbers it rests on (dashes where they do not apply)."""

    label: str
    difference: str = _DASH  # mean - published, bits/dim
    interval: str = _DASH  # the 95% interval of our mean


@cache
def t_quantile(probability: float, dof: int) -> float:
    """The ``probability`` quantile (> 0.5) of Student's t with ``dof`` degrees of freedom, by
    bisection on its CDF, integrated from the density with Simpson's rule (no SciPy needed)."""
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (dof + 1) / 2 * math.log1p(x * x / dof))

    def cdf(x: float, steps: int = 4000) -> float:
        h = x / steps
        inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
        return 0.5 + h / 3 * (density(0.0) + inner + density(x))

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def judge(
    runs: pd.DataFrame,
    published: float | None,
    paper_digest: str | None,
    seeds: list[int],
    tolerance: float = TOLERANCE_BPD,
) -> Verdict:
    """The verdict on ``runs`` (one method's rows of the summary) against ``published``.

    ``paper_digest`` is the protocol digest of the method's paper config (None: none exists);
    ``seeds`` are the seeds the profile ran, every one of which must have finished.
    """
    if published is None:
        return Verdict("no published number")
    digests = set(runs["protocol_digest"])
    if paper_digest is None or digests != {paper_digest}:
        return Verdict("not comparable: not the paper config")
    finished = runs[runs["status"].map(usable)]["seed"].astype(int)  # ok, or recovered
    if set(finished) != set(seeds):
        return Verdict(f"incomplete: {len(set(finished) & set(seeds))}/{len(seeds)} seeds finished")
    if len(seeds) < 2:
        return Verdict("incomplete: 1 seed, an interval needs 2")
    values = runs.set_index("seed")["test_bpd"].astype(float)
    mean, spread, n = values.mean(), values.std(ddof=1), len(values)
    half = t_quantile((1 + CONFIDENCE) / 2, n - 1) * spread / math.sqrt(n)
    difference = mean - published
    interval = f"{mean - half:.3f} – {mean + half:.3f}"
    if abs(difference) <= half and abs(difference) <= tolerance:
        label = "reproduced"
    else:
        label = "better than published" if difference < 0 else "worse than published"
    return Verdict(label, f"{difference:+.3f}", interval)
